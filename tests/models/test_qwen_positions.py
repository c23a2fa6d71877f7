"""Qwen2.5-VL M-RoPE positions: HF's get_rope_index for a full video, coordinates kept for a subset."""

from __future__ import annotations

import pytest
import torch

from earlytom.models.qwen_vl.architecture import QWEN25_VL_7B_VISION, qwen25_vl_config
from earlytom.models.qwen_vl.positions import grid_coords, mrope_positions, time_interval

VIDEO, TEXT = 7, 3  # placeholder id; any other id is text
TOKENS_PER_SECOND = int(QWEN25_VL_7B_VISION["tokens_per_second"])


@pytest.fixture(scope="module")
def hf_model():
    from transformers import Qwen2_5_VLModel

    tiny = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64}
    vision = QWEN25_VL_7B_VISION | tiny | {"depth": 4, "fullatt_block_indexes": [3]}
    text = {"vocab_size": 64, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    ids = {"image_token_id": 6, "video_token_id": VIDEO, "vision_start_token_id": 4, "vision_end_token_id": 5}
    config = qwen25_vl_config(vision, text, ids=ids, mrope_section=[2, 3, 3])
    return Qwen2_5_VLModel(config).eval()


def _prompt(before: int, tokens: int, after: int) -> torch.Tensor:
    return torch.tensor([TEXT] * before + [VIDEO] * tokens + [TEXT] * after)


def _hf(model, input_ids: torch.Tensor, grid: tuple[int, int, int], second_per_grid: float):
    """HF's (3, L) positions and the position of its first generated token (L + rope delta)."""
    types = (input_ids == VIDEO).int() * 2  # mm_token_type_ids: video = 2
    positions, delta = model.get_rope_index(
        input_ids[None],
        types[None],
        video_grid_thw=torch.tensor([grid]),
        second_per_grid_ts=torch.tensor([second_per_grid], dtype=torch.float32),
    )
    return positions[:, 0], int(delta) + input_ids.shape[0]


# (grid_thw in patches, fps of the sampled frames); the merged grid is (t, gh/2, gw/2)
SPATIAL_WIDER = [((2, 8, 12), 2.0), ((4, 16, 20), 3.0), ((6, 12, 12), 5.0), ((3, 24, 42), 0.7)]


@pytest.mark.parametrize(("grid", "fps"), SPATIAL_WIDER)
def test_full_video_equals_hf_get_rope_index(hf_model, grid: tuple[int, int, int], fps: float) -> None:
    t, rows, cols = grid[0], grid[1] // 2, grid[2] // 2
    input_ids = _prompt(15, t * rows * cols, 9)
    second_per_grid = 2 / fps
    ours, next_position = mrope_positions(
        input_ids,
        video_token_id=VIDEO,
        token_coords=grid_coords(t, rows, cols),
        time_interval=time_interval(second_per_grid, TOKENS_PER_SECOND),
    )
    hf, hf_next = _hf(hf_model, input_ids, grid, second_per_grid)
    assert ours.dtype == torch.int64 and ours.shape == (3, input_ids.shape[0])
    assert torch.equal(ours, hf)
    assert next_position == hf_next == int(ours.max()) + 1


def test_long_video_text_after_starts_at_max_plus_one(hf_model) -> None:
    """The temporal extent (up to 7·4 = 28) exceeds the merged grid's side (2): text after the video
    starts at max + 1 (Qwen's reference). HF 5.24 places it at start + 2 inside the video's
    temporal range, but agrees on everything before it and on the first generated token."""
    grid, second_per_grid = (8, 4, 4), 2.0
    input_ids = _prompt(5, 8 * 2 * 2, 4)
    end = 5 + 32
    ours, next_position = mrope_positions(
        input_ids, video_token_id=VIDEO, token_coords=grid_coords(8, 2, 2),
        time_interval=time_interval(second_per_grid, TOKENS_PER_SECOND),
    )  # fmt: skip
    hf, hf_next = _hf(hf_model, input_ids, grid, second_per_grid)
    assert torch.equal(ours[:, :end], hf[:, :end])
    assert int(ours[0, end - 1]) == 5 + 28
    assert ours[:, end:].tolist() == [[34, 35, 36, 37]] * 3
    assert hf_next == 34  # HF's generation continues from the same max + 1
    assert next_position == 38


def test_time_interval_is_float32_and_truncated_after_the_product() -> None:
    interval = time_interval(2 / 3, TOKENS_PER_SECOND)  # 3 fps sampled
    assert interval == float(torch.tensor(2 / 3, dtype=torch.float32) * 2)
    input_ids = _prompt(2, 6, 0)
    coords = torch.tensor([[t, 0, 0] for t in range(6)])
    positions, _ = mrope_positions(
        input_ids, video_token_id=VIDEO, token_coords=coords, time_interval=interval
    )
    assert positions[0, 2:].tolist() == [2 + v for v in (0, 1, 2, 4, 5, 6)]  # int(t · 1.333...)
    assert time_interval(0.25, 2) == 0.5
    positions, _ = mrope_positions(input_ids, video_token_id=VIDEO, token_coords=coords, time_interval=0.5)
    assert positions[0, 2:].tolist() == [2 + v for v in (0, 0, 1, 1, 2, 2)]


def test_kept_tokens_keep_their_coordinates() -> None:
    t, rows, cols = 4, 6, 8
    full_coords = grid_coords(t, rows, cols)
    interval = time_interval(2 / 1.5, TOKENS_PER_SECOND)
    n = full_coords.shape[0]
    full, _ = mrope_positions(_prompt(10, n, 6), video_token_id=VIDEO, token_coords=full_coords,
                              time_interval=interval)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    kept = torch.randperm(n, generator=generator)[: n // 5].sort().values  # prompt order
    kept = kept[full_coords[kept, 0] < 2]  # drop the last temporal patches: a smaller maximum
    input_ids = _prompt(10, kept.numel(), 6)
    ours, next_position = mrope_positions(input_ids, video_token_id=VIDEO, token_coords=full_coords[kept],
                                          time_interval=interval)  # fmt: skip
    end = 10 + kept.numel()
    assert torch.equal(ours[:, :10], full[:, :10])
    assert torch.equal(ours[:, 10:end], full[:, 10 + kept])
    start = int(ours[:, :end].max()) + 1
    assert start < int(full[:, : 10 + n].max()) + 1
    assert ours[:, end:].tolist() == [list(range(start, start + 6))] * 3
    assert next_position == start + 6


def test_text_only_and_bad_inputs() -> None:
    input_ids = _prompt(5, 0, 0)
    positions, next_position = mrope_positions(
        input_ids, video_token_id=VIDEO, token_coords=torch.zeros(0, 3, dtype=torch.int64), time_interval=1.0
    )
    assert positions.tolist() == [list(range(5))] * 3 and next_position == 5
    with pytest.raises(ValueError, match="shape"):
        mrope_positions(
            _prompt(2, 3, 1), video_token_id=VIDEO, token_coords=grid_coords(1, 1, 2), time_interval=1.0
        )
    split = torch.tensor([TEXT, VIDEO, TEXT, VIDEO])
    with pytest.raises(ValueError, match="contiguous"):
        mrope_positions(split, video_token_id=VIDEO, token_coords=grid_coords(1, 1, 2), time_interval=1.0)

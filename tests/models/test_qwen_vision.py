"""Qwen2.5-VL's vision transformer on (T, S, D) frames: the same numbers as HF's packed forward."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from earlytom.models.qwen_vl.architecture import QWEN25_VL_7B_VISION, qwen25_vl_config
from earlytom.models.qwen_vl.vision import (
    FrameGeometry,
    QwenFrameLayer,
    QwenVisionSide,
    patch_positions,
    window_mask,
)

GRIDS = [(2, 16, 16), (3, 12, 20), (1, 10, 14)]  # the last two are not multiples of the 8×8 window
TINY_TEXT = dict(
    vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=24, num_attention_heads=4,
    num_key_value_heads=2, bos_token_id=1000, eos_token_id=1000,
)  # fmt: skip
TINY_IDS = dict(
    image_token_id=1001, video_token_id=1002, vision_start_token_id=1003, vision_end_token_id=1004
)


def tiny_config() -> Any:
    vision = dict(QWEN25_VL_7B_VISION, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    return qwen25_vl_config(vision=vision, text=TINY_TEXT, ids=TINY_IDS, mrope_section=[2, 3, 3])


def tiny_model() -> Any:
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(tiny_config()).float().eval()
        sharpen(model.model.visual)
    return model


def sharpen(visual: Any) -> None:
    """Fan-in scaled weights. HF's 0.02 init makes every attention row almost uniform (received
    attention varies by 0.07 % across tokens, dropping the rotary moves the output by 2e-5), so a
    wrong window or rotary would pass; with these it varies by ~21 % and either mistake moves the
    output by more than 1."""
    with torch.no_grad():
        for name, parameter in visual.named_parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0, parameter[0].numel() ** -0.5)
            elif "norm" not in name and "ln_q" not in name:
                parameter.normal_(0, 0.1)  # biases


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model()


@pytest.fixture(scope="module")
def side(model: Any) -> QwenVisionSide:
    return QwenVisionSide.from_qwen(model.model)


def random_patches(t: int, gh: int, gw: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(t * gh * gw, 3 * 2 * 14 * 14, generator=generator)  # (t·gh·gw, 1176)


def chain(side: QwenVisionSide, patches: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    hidden = side.embed(patches)  # (T, S, D)
    return side.merge(side.run_layers(hidden, geometry))  # (T, Q, C)


def frame_layer(side: QwenVisionSide, index: int) -> QwenFrameLayer:
    layer = side.layers[index]
    assert isinstance(layer, QwenFrameLayer)
    return layer


def unpermute(window_index: torch.Tensor, unit: int = 4) -> torch.Tensor:
    """HF's window-ordered patch position i holds the processor-order patch perm[i]."""
    return (window_index[:, None] * unit + torch.arange(unit)).flatten()


def test_properties_follow_the_config(side: QwenVisionSide) -> None:
    assert side.num_layers == 32 and side.full_attention_layers == (7, 15, 23, 31)
    assert [frame_layer(side, i).full_attention for i in range(32)].count(True) == 4
    assert side.hidden_size == 32 and side.out_hidden_size == 64 and side.merge_unit == 4
    assert side.temporal_patch_size == 2 and side.patch_size == 14 and side.units_per_window == 4


@pytest.mark.parametrize("grid", GRIDS)
def test_embed_layers_merge_equal_hf_visual(
    model: Any, side: QwenVisionSide, grid: tuple[int, int, int]
) -> None:
    t, gh, gw = grid
    pixels = random_patches(t, gh, gw)
    with torch.no_grad():
        expected = model.model.visual(pixels, grid_thw=torch.tensor([grid])).pooler_output
        ours = chain(side, pixels.view(t, gh * gw, -1), side.geometry(gh, gw))
    assert ours.shape == (t, gh * gw // 4, 64)
    torch.testing.assert_close(ours, expected.view(t, -1, 64), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grid", GRIDS)
def test_geometry_follows_hf_positions_and_rotary(side: QwenVisionSide, grid: tuple[int, int, int]) -> None:
    from transformers.vision_utils import get_vision_position_ids

    _, gh, gw = grid
    hf_positions = get_vision_position_ids(torch.tensor([[1, gh, gw]]), 2)  # (S, 2)
    assert torch.equal(patch_positions(gh, gw, 2), hf_positions)
    geometry = side.geometry(gh, gw)
    cos, sin = side.rotary_pos_emb(hf_positions, hf_positions)
    assert geometry.cos.dtype == torch.float32 and geometry.cos.shape == (gh * gw, 16)
    assert torch.equal(geometry.cos, cos) and torch.equal(geometry.sin, sin)
    assert geometry.grid == (gh, gw) and geometry.tokens == gh * gw


@pytest.mark.parametrize("grid", [*GRIDS, (1, 8, 8), (1, 2, 30)])
def test_window_mask_matches_hf_window_index(grid: tuple[int, int, int]) -> None:
    from transformers.vision_utils import get_vision_window_index

    _, gh, gw = grid
    mask = window_mask(gh, gw, merge=2, units_per_window=4)
    rows = mask.sum(dim=1)
    assert bool((rows >= 1).all()) and bool((rows <= 64).all())
    assert torch.equal(mask, mask.T)
    index, cu = get_vision_window_index(torch.tensor([[1, gh, gw]]), 2, 112, 14)
    window_of_permuted = torch.bucketize(torch.arange(gh * gw), cu[1:].long(), right=True)  # (S,)
    window = torch.empty(gh * gw, dtype=torch.long)
    window[unpermute(index)] = window_of_permuted  # back to processor order
    assert torch.equal(mask, window[:, None] == window[None, :])


def test_geometry_rejects_grids_the_merge_cannot_tile(side: QwenVisionSide) -> None:
    with pytest.raises(ValueError, match="merge"):
        side.geometry(10, 7)


def hf_received_attention(model: Any, pixels: torch.Tensor, grid: tuple[int, int, int], layer: int) -> Any:
    """Block `layer`'s eager probabilities, built from the inputs HF's own attention module received.

    HF 5.24's vision attention returns no probabilities (`output_attentions` records the module's
    output), so a hook captures its inputs and HF's `eager_attention_forward` recomputes them; the
    recomputed output must equal the module's own (the run uses the eager implementation).
    """
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as hf
    from transformers.vision_utils import get_vision_window_index

    visual, seen = model.model.visual, dict[str, Any]()
    attn = visual.blocks[layer].attn

    def capture(module: Any, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        seen.update(x=args[0], output=output, **kwargs)

    handle = attn.register_forward_hook(capture, with_kwargs=True)
    previous, visual.config._attn_implementation = visual.config._attn_implementation, "eager"
    try:
        with torch.no_grad():
            visual(pixels, grid_thw=torch.tensor([grid]))
    finally:
        visual.config._attn_implementation = previous
        handle.remove()
    x, cu = seen["x"], seen["cu_seqlens"].tolist()
    q, k, v = attn.qkv(x).reshape(x.shape[0], 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = hf.apply_rotary_pos_emb_vision(q, k, *seen["position_embeddings"])
    outputs, received = [], []
    for a, b in itertools.pairwise(cu):

        def heads(tensor: torch.Tensor, a: int = a, b: int = b) -> torch.Tensor:
            return tensor[a:b].transpose(0, 1)[None]  # (1, H, S, hd)

        out, probs = hf.eager_attention_forward(attn, heads(q), heads(k), heads(v), None, attn.scaling)
        outputs.append(out[0].flatten(1))
        received.append(probs[0].float().mean(dim=(0, 1)))  # (S,) over heads and query rows
    torch.testing.assert_close(attn.proj(torch.cat(outputs)), seen["output"], atol=1e-6, rtol=1e-5)
    index, _ = get_vision_window_index(torch.tensor([grid]), 2, 112, 14)
    scores = torch.empty(x.shape[0])
    scores[unpermute(index)] = torch.cat(received)  # processor order
    return scores.view(grid[0], -1)


@pytest.mark.parametrize("grid", [(2, 16, 16), (3, 12, 20)])
def test_received_attention_equals_hf_eager_probabilities(
    model: Any, side: QwenVisionSide, grid: tuple[int, int, int]
) -> None:
    t, gh, gw = grid
    pixels = random_patches(t, gh, gw, seed=2)
    geometry = side.geometry(gh, gw)
    with torch.no_grad():
        hidden = side.run_layers(side.embed(pixels.view(t, gh * gw, -1)), geometry, 0, 7)
        plain = frame_layer(side, 7)(hidden, geometry.cos, geometry.sin, geometry.window_mask)
        for chunk in (8, 1, None):
            out, scores = frame_layer(side, 7).with_received_attention(
                hidden, geometry.cos, geometry.sin, geometry.window_mask, frames_per_chunk=chunk
            )
            torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)
    assert scores.dtype == torch.float32 and scores.shape == (t, gh * gw)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(t), atol=1e-6, rtol=0)
    expected = hf_received_attention(model, pixels, grid, 7)
    torch.testing.assert_close(scores, expected, atol=1e-7, rtol=1e-5)
    pooled = side.pool_scores(scores)
    torch.testing.assert_close(pooled, scores.view(t, -1, 4).mean(-1))
    assert pooled.shape == (t, gh * gw // 4)


def test_received_attention_refuses_a_window_block(side: QwenVisionSide) -> None:
    geometry = side.geometry(8, 8)
    hidden = torch.randn(1, 64, 32)
    with pytest.raises(ValueError, match="full-attention"):
        frame_layer(side, 6).with_received_attention(hidden, geometry.cos, geometry.sin, geometry.window_mask)


def test_frames_are_independent_so_merged_batches_keep_the_geometry(side: QwenVisionSide) -> None:
    """Stage I changes T between layers: one geometry serves any frame count, frames never mix."""
    t, gh, gw = 3, 12, 20
    geometry = side.geometry(gh, gw)
    with torch.no_grad():
        hidden = side.embed(random_patches(t, gh, gw, seed=3).view(t, gh * gw, -1))  # (3, S, D)
        early = side.run_layers(hidden, geometry, 0, 8)
        subset = early[[0, 2]]  # (2, S, D), as a merge plan that keeps frames 0 and 2
        both = side.run_layers(early, geometry, 8)[[0, 2]]
        alone = side.run_layers(subset, geometry, 8)
        layer = frame_layer(side, 15)
        _, scores3 = layer.with_received_attention(early, geometry.cos, geometry.sin, geometry.window_mask)
        _, scores2 = layer.with_received_attention(subset, geometry.cos, geometry.sin, geometry.window_mask)
    torch.testing.assert_close(alone, both, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(scores2, scores3[[0, 2]], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(side.merge(alone), side.merge(both), atol=1e-6, rtol=1e-5)


def test_7b_numbers_on_the_meta_device() -> None:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from earlytom.models.qwen_vl.architecture import qwen25_vl_7b_config

    config = qwen25_vl_7b_config()
    with torch.device("meta"):
        visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
    side = QwenVisionSide.from_visual(visual, config)
    assert (side.num_layers, side.hidden_size, side.out_hidden_size) == (32, 1280, 3584)
    assert side.full_attention_layers == (7, 15, 23, 31) and side.units_per_window == 4
    mask = window_mask(32, 32, merge=2, units_per_window=side.units_per_window)  # 448×448 px
    assert mask.sum(dim=1).tolist() == [64] * 1024  # 4×4 windows of 8×8 patches

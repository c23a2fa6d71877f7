"""The post-encoder baseline (stock encoder, then per-frame top-k by last-layer received attention)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration

from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import InputError
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.vision import VisionSide, pool_grid
from earlytom.runtime.pipeline import EarlyTomPipeline
from earlytom.vision_path import torch_vision_path


@pytest.fixture(scope="module")
def pixels(jobs_frames) -> torch.Tensor:
    return preprocess_frames(jobs_frames.frames[:8])  # (8, 3, 384, 384)


def literal_post_encoder(eager_llava, pixels: torch.Tensor, retention: float):
    """HF's own tower (eager attention maps), projector and pooling; top-k one frame at a time."""
    tower, num_layers = eager_llava.vision_tower, len(eager_llava.vision_tower.encoder.layers)
    out = tower(pixels, output_hidden_states=True, output_attentions=True)
    grid = eager_llava.config.vision_config.image_size // eager_llava.config.vision_config.patch_size
    received = out.attentions[num_layers - 1].float().mean(dim=(1, 2))  # (T, S)
    pooled = pool_grid(eager_llava.multi_modal_projector(out.hidden_states[num_layers]), grid)
    pooled_scores = pool_grid(received[..., None], grid)[..., 0]  # (T, P)
    keep = math.ceil(pooled.shape[1] * retention)
    rows, positions = [], []
    for t in range(pooled.shape[0]):
        order = sorted(range(pooled.shape[1]), key=lambda j: (-float(pooled_scores[t, j]), j))
        for j in sorted(order[:keep]):
            rows.append(pooled[t, j])
            positions.append(j)
    newline = eager_llava.image_newline[None]
    return torch.cat([torch.stack(rows), newline]), torch.tensor(positions)


def test_matches_a_literal_reference_on_real_frames(tiny_loaded, tiny_cache, pixels) -> None:
    from earlytom.models.tiny import tiny_path

    eager = LlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_path(tiny_cache), attn_implementation="eager"
    ).model
    for retention in (0.1, 0.25):
        vision = VisionSide.from_llava(tiny_loaded.model.model)
        path = torch_vision_path(vision, preset("videomme", retention), method="post-encoder")
        encoded = path.encode(pixels)
        tokens = path.tokens(encoded)
        with torch.no_grad():
            expected, positions = literal_post_encoder(eager, pixels, retention)
        assert encoded.frames_per_stage == (8,)
        assert tokens.positions is not None and tokens.frame_ids is not None
        assert torch.equal(tokens.positions, positions)
        assert torch.equal(tokens.frame_ids, torch.arange(8).repeat_interleave(len(positions) // 8))
        torch.testing.assert_close(tokens.embeds, expected, atol=1e-5, rtol=1e-5)


def test_full_retention_equals_the_stock_tokens(tiny_loaded, pixels) -> None:
    vision = VisionSide.from_llava(tiny_loaded.model.model)
    stock = torch_vision_path(vision, EarlyTomConfig(enabled=False)).run(pixels)
    every = torch_vision_path(vision, EarlyTomConfig(retention=1.0), method="post-encoder").run(pixels)
    assert every.embeds.shape == stock.embeds.shape == (8 * 196 + 1, stock.embeds.shape[1])
    # Only the scoring layer differs (explicit fp32 attention instead of the layer's own).
    torch.testing.assert_close(every.embeds, stock.embeds, atol=1e-5, rtol=1e-5)


def test_pipeline_runs_the_baseline_with_the_same_language_side(tiny_loaded, jobs_frames) -> None:
    config = preset("videomme", 0.1)
    result = EarlyTomPipeline(tiny_loaded, config, num_frames=8, method="post-encoder")(
        jobs_frames.path, "Describe the video.", max_new_tokens=2
    )
    assert result.frames_per_stage == [8]
    assert result.visual_tokens_after == 8 * math.ceil(196 * 0.1) + 1
    assert result.extra["method"] == "post-encoder"
    assert result.extra["inner_merge"]["layer"] == config.inner_layer  # Stage III as for EarlyTom


def test_pipeline_refuses_what_the_baseline_cannot_do(tiny_loaded, tmp_path) -> None:
    with pytest.raises(InputError, match="unknown method 'visionzip'"):
        EarlyTomPipeline(tiny_loaded, preset(), method="visionzip")
    with pytest.raises(InputError, match="needs an enabled config"):
        EarlyTomPipeline(tiny_loaded, EarlyTomConfig(enabled=False), method="post-encoder")
    with pytest.raises(InputError, match="no engine folder"):
        EarlyTomPipeline(tiny_loaded, None, artifacts=tmp_path, method="post-encoder")

"""The torch vision path (encoder segments, planner, head, select) against the HF tower it composes."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration

from earlytom.config import EarlyTomConfig
from earlytom.models.attention import layer_with_received_attention
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.vision import VisionSide, feature_layer_count
from earlytom.vision_path import torch_vision_path


@pytest.fixture(scope="module")
def pixels(jobs_frames) -> torch.Tensor:
    return preprocess_frames(jobs_frames.frames[:8])  # (8, 3, 384, 384)


def test_compression_off_equals_hf_feature_layer(tiny_loaded, pixels) -> None:
    tower = tiny_loaded.model.model.vision_tower
    stock = tower(pixels, output_hidden_states=True).hidden_states[-1]
    vision = VisionSide.from_llava(tiny_loaded.model.model)
    out = torch_vision_path(vision, EarlyTomConfig(enabled=False)).encode(pixels)
    assert out.frames_per_stage == (8,) and out.scores is None and out.selection is None
    torch.testing.assert_close(out.features, vision.projector(stock), atol=0, rtol=0)


def test_scoring_layer_equals_hf_layer_and_eager_attention(tiny_loaded, tiny_cache, pixels) -> None:
    tower = tiny_loaded.model.model.vision_tower
    hidden = tower.embeddings(pixels)
    layer = tower.encoder.layers[3]
    out, scores = layer_with_received_attention(layer, hidden, frames_per_chunk=3)
    torch.testing.assert_close(out, layer(hidden, None), atol=1e-5, rtol=1e-5)

    # Independent oracle: HF's eager attention returns the probability maps themselves.
    from earlytom.models.tiny import tiny_path

    eager = LlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_path(tiny_cache), attn_implementation="eager"
    )
    eager_layer = eager.model.vision_tower.encoder.layers[3]
    _, probs = eager_layer.self_attn(eager_layer.layer_norm1(hidden))  # (T, H, S, S)
    torch.testing.assert_close(scores, probs.float().mean(dim=(1, 2)), atol=1e-7, rtol=1e-5)
    assert scores.dtype == torch.float32 and scores.shape == (8, 729)
    torch.testing.assert_close(scores.sum(-1), torch.ones(8))  # each query row sums to 1


def test_compressing_run_on_real_frames(tiny_loaded, jobs_frames) -> None:
    pixels = preprocess_frames(jobs_frames.frames)
    vision = VisionSide.from_llava(tiny_loaded.model.model)
    out = torch_vision_path(vision, EarlyTomConfig()).encode(pixels)
    frames = out.frames_per_stage
    assert len(frames) == 4 and frames[0] == 32
    assert all(b <= a for a, b in pairwise(frames)) and frames[-1] < 32
    assert out.features.shape == (frames[-1], 729, vision.image_newline.shape[0])
    assert out.scores is not None and out.scores.shape == (frames[-1], 729)
    torch.testing.assert_close(out.scores.sum(-1), torch.ones(frames[-1]))  # merging is convex
    assert out.selection is not None
    covered = [f for s, e in out.selection.groups for f in range(s, e + 1)]
    assert covered == list(range(frames[-1]))
    stages = sorted({d.stage for d in out.decisions})
    assert stages == [0, 1, 2, 3]  # three merges and the final grouping, each decision recorded


def test_feature_layer_count() -> None:
    assert feature_layer_count(26, -1) == 26
    assert feature_layer_count(27, -2) == 26
    assert feature_layer_count(26, 26) == 26
    with pytest.raises(ValueError):
        feature_layer_count(26, 0)

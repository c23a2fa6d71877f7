"""End to end on the tiny model and the paper's clip, torch backend."""

from __future__ import annotations

import pytest
import torch

from earlytom.config import preset
from earlytom.errors import ConfigError, InputError
from earlytom.runtime.pipeline import EarlyTomPipeline, resolve_device


@pytest.mark.parametrize("retention", [0.10, 0.25])
def test_default_preset_compresses_jobs_clip(tiny_loaded, jobs_frames, retention: float) -> None:
    result = EarlyTomPipeline(tiny_loaded, preset("videomme", retention))(
        jobs_frames, "Describe the video.", max_new_tokens=4
    )
    frames = result.frames_per_stage
    assert frames[0] == 32 and len(frames) == 4 and frames[-1] < 32
    assert result.visual_tokens_before == 32 * 196 + 1
    expected = retention * 32 * 196 + 1
    assert abs(result.visual_tokens_after - expected) / expected < 0.05
    assert 1 <= len(result.token_ids) <= 4
    times = result.ttft_ms
    assert min(times.vision_encoding, times.token_processing, times.llm_prefill, times.other) > 0
    assert times.total == pytest.approx(
        times.vision_encoding + times.token_processing + times.llm_prefill + times.other
    )


def test_greedy_answer_is_deterministic(tiny_loaded, jobs_frames) -> None:
    pipeline = EarlyTomPipeline(tiny_loaded, preset())
    first = pipeline(jobs_frames, "What is shown?", max_new_tokens=6)
    second = pipeline(jobs_frames, "What is shown?", max_new_tokens=6)
    assert first.token_ids == second.token_ids and first.text == second.text


def test_first_token_equals_stock_prefill_on_the_same_embeds(tiny_loaded, jobs_frames) -> None:
    """The prefill/decode loop continues exactly what a plain forward predicts."""
    pipeline = EarlyTomPipeline(tiny_loaded, preset())
    prepared = pipeline.prepare(jobs_frames, "What is shown?")
    with torch.no_grad():
        logits = tiny_loaded.model(inputs_embeds=prepared.inputs_embeds).logits
    result = pipeline(jobs_frames, "What is shown?", max_new_tokens=1)
    assert result.token_ids == [int(logits[0, -1].argmax())]


def test_layers_beyond_the_model_are_refused(tiny_loaded) -> None:
    with pytest.raises(ConfigError, match="vision encoder has 26 layers"):
        EarlyTomPipeline(tiny_loaded, preset(prune_layers=(10, 26)))


def test_bad_arguments(tiny_loaded, jobs_frames) -> None:
    with pytest.raises(InputError, match="prompt is empty"):
        EarlyTomPipeline(tiny_loaded, preset())(jobs_frames, "  ")
    with pytest.raises(InputError, match="frames=0"):
        EarlyTomPipeline(tiny_loaded, preset(), num_frames=0)
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu:x")

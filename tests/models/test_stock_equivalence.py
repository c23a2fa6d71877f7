"""Compression off means stock: same logits as the unmodified HF model. Keep this test forever."""

from __future__ import annotations

import torch

from earlytom.config import EarlyTomConfig
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.prompt import build_input_ids
from earlytom.models.video import DecodedVideo
from earlytom.runtime.pipeline import EarlyTomPipeline


def test_compression_off_logits_equal_stock_llava_onevision(tiny_loaded, jobs_frames) -> None:
    pipeline = EarlyTomPipeline(tiny_loaded, EarlyTomConfig(enabled=False), num_frames=32)
    prepared = pipeline.prepare(jobs_frames, "What happens in this video?")
    assert prepared.video.embeds.shape[0] == 32 * 196 + 1

    model = tiny_loaded.model
    pixel_values = preprocess_frames(jobs_frames.frames)[None]  # (1, T, 3, 384, 384)
    stock_ids = build_input_ids(
        tiny_loaded.tokenizer,
        "What happens in this video?",
        num_video_tokens=32 * 196 + 1,
        video_token_id=model.config.video_token_id,
    )
    with torch.no_grad():
        stock = model(input_ids=stock_ids, pixel_values_videos=pixel_values).logits
        ours = model(inputs_embeds=prepared.inputs_embeds).logits
    assert torch.equal(prepared.input_ids, stock_ids)
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


def test_compression_off_run_reports_stock_counts(tiny_loaded, jobs_frames) -> None:
    short = DecodedVideo(jobs_frames.frames[:4], jobs_frames.indices[:4], 524, None, jobs_frames.path)
    result = EarlyTomPipeline(tiny_loaded, EarlyTomConfig(enabled=False), num_frames=4)(
        short, "Hi", max_new_tokens=3
    )
    assert result.frames_per_stage == [4]
    assert result.visual_tokens_before == result.visual_tokens_after == 4 * 196 + 1

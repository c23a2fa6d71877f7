"""Clips whose Stage I decisions sit at near-ties agree on torch and ONNX Runtime fp32, and validate.

`noisy_cut_frozen` is the kind of clip that first showed a flip (a still, sensor-noisy shot, a hard
cut and a frozen tail); `still_cut_tie` has a merge decided by a margin below the fp32 noise
between backends. With the tie band both backends resolve those comparisons alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from earlytom.artifact import Artifact
from earlytom.config import EarlyTomConfig
from earlytom.exporter.onnx_export import SegmentFile
from earlytom.exporter.validate import validate_segments
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.segments import build_stages
from earlytom.models.video import load_video
from earlytom.models.vision import load_vision_side
from earlytom.runtime.pipeline import EarlyTomPipeline
from earlytom.vision_path import planner_for

pytestmark = pytest.mark.slow
PROMPT = "Describe the video."


def clip_path(name: str, folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from clips import CLIPS, write_clip
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return write_clip(CLIPS[name], folder)


@pytest.mark.parametrize("name", ["noisy_cut_frozen", "still_cut_tie"])
def test_torch_and_onnxruntime_agree_and_the_export_validates(
    name: str, tiny_loaded, tiny_cache: Path, fp32_dir: Path, tmp_path: Path
) -> None:
    video = load_video(clip_path(name, tmp_path), 32)
    torch_run = EarlyTomPipeline(tiny_loaded, EarlyTomConfig())
    ort_run = EarlyTomPipeline(tiny_loaded, artifacts=fp32_dir)
    ours, theirs = torch_run.prepare(video, PROMPT).video, ort_run.prepare(video, PROMPT).video
    assert ours.frames_per_stage == theirs.frames_per_stage
    assert torch.equal(ours.frame_ids, theirs.frame_ids) and torch.equal(ours.positions, theirs.positions)
    assert [d.outcome for d in ours.decisions] == [d.outcome for d in theirs.decisions]
    assert (
        torch_run(video, PROMPT, max_new_tokens=4).token_ids
        == ort_run(video, PROMPT, max_new_tokens=4).token_ids
    )

    artifact = Artifact.read(fp32_dir)
    vision = load_vision_side("tiny", cache_dir=tiny_cache).vision
    files = [SegmentFile(s, artifact.path(artifact.segment(s.name).file), (), (), "") for s in artifact.specs]
    cases = {name: preprocess_frames(video.frames)}
    planner = planner_for(EarlyTomConfig(), tie_band=artifact.manifest.tie_band)
    stages = build_stages(vision, EarlyTomConfig())
    report = validate_segments(
        files, stages, cases, planner, precision="float32", tokens_per_frame=vision.pooled_tokens_per_frame
    )
    assert report.passed, report.describe_failures()
    assert report.near_tie_flips == []

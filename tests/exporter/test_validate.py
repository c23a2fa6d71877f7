"""Validation catches a wrong graph, and tells a near-tie decision flip from a real mismatch."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import numpy_helper

from earlytom.artifact import Artifact
from earlytom.compression.decisions import decide
from earlytom.config import EarlyTomConfig
from earlytom.exporter.onnx_export import SegmentFile
from earlytom.exporter.validate import _compare_chains, thresholds_for, validate_segments
from earlytom.models.preprocess import preprocess_frames
from earlytom.models.segments import build_stages
from earlytom.models.vision import load_vision_side
from earlytom.vision_path import VideoTokens, planner_for

pytestmark = pytest.mark.slow


def test_a_tampered_graph_fails_validation_with_a_named_report(
    fp32_dir: Path, tiny_cache: Path, jobs_frames, tmp_path: Path
) -> None:
    artifact = Artifact.read(fp32_dir)
    folder = tmp_path / "tampered"
    shutil.copytree(fp32_dir, folder)
    head = onnx.load(folder / "head.onnx")
    weight = max(head.graph.initializer, key=lambda t: int(numpy_helper.to_array(t).size))
    values = numpy_helper.to_array(weight).copy()
    values *= -1.0  # a projector that points the other way: every feature's cosine turns negative
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(head, folder / "head.onnx")

    vision = load_vision_side("tiny", cache_dir=tiny_cache).vision
    config = EarlyTomConfig()
    files = [
        SegmentFile(spec, folder / artifact.segment(spec.name).file, (), (), "") for spec in artifact.specs
    ]
    cases = {"jobs.mp4 (8 frames)": preprocess_frames(jobs_frames.frames[:8])}
    report = validate_segments(
        files, build_stages(vision, config), cases,
        planner_for(config, tie_band=artifact.manifest.tie_band), precision="float32",
        tokens_per_frame=vision.pooled_tokens_per_frame,
    )  # fmt: skip
    assert not report.passed and report.near_tie_flips == []
    failed = {(c.where, c.output) for c in report.failures}
    assert ("head", "features") in failed and ("chain", "video_tokens") in failed
    assert all(c.passed for c in report.checks if c.where.startswith("segment"))  # the untouched stages pass
    assert "head/features: cosine" in report.describe_failures()
    assert report.summary()["failed"] == len(report.failures)


def tokens(frames: tuple[int, ...], decisions: list) -> VideoTokens:
    embeds = torch.arange(12.0).view(3, 4)  # two tokens and the newline
    frame_ids, positions = torch.tensor([0, 1]), torch.tensor([5, 7])
    return VideoTokens(embeds, frame_ids, positions, frames, frames[0] * 196 + 1, tuple(decisions))


@pytest.mark.parametrize(("margin", "near_tie"), [(3e-6, True), (0.2, False)])
def test_a_flip_is_a_near_tie_only_within_the_noise_bound(margin: float, near_tie: bool) -> None:
    thresholds = thresholds_for("float32")
    same = decide("segment_close", (0, 1), 0.9, 0.3, tie_band=0.0, stage=0)
    ours = decide("merge_threshold", (2, 3, 1, 5), 0.5 + margin, 0.5, tie_band=0.0, stage=1)
    theirs = decide("merge_threshold", (2, 3, 1, 5), 0.5 - margin, 0.5, tie_band=0.0, stage=1)
    expected, got = tokens((32, 23, 16, 11), [same, ours]), tokens((32, 23, 16, 12), [same, theirs])
    (check,) = _compare_chains("clip", expected, got, thresholds)
    assert check.near_tie is near_tie and check.passed is near_tie  # a real mismatch never passes
    assert ("near-tie flip" in check.reason) is near_tie and f"{margin:+.2e}" in check.reason


def test_identical_chains_report_no_flip() -> None:
    same = decide("segment_close", (0, 1), 0.9, 0.3, tie_band=0.0)
    expected = tokens((8, 6), [same])
    checks = _compare_chains("clip", expected, expected, thresholds_for("float16"))
    assert checks and all(c.passed and not c.near_tie for c in checks)

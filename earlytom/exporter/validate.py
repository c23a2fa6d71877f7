"""Exported segments vs the PyTorch reference in ONNX Runtime (DESIGN §7), by collecting.

Every case (real frames, random frames) is run twice: each ONNX stage on the exact inputs the
reference stage received, and the whole ONNX chain from pixels with the same planner between
stages. Every output is compared (max-abs, cosine, selected pairs); all mismatches are gathered
and reported together. Polygraphy's comparator is not used: the checks need cosine similarity
and index equality, and the chain runs the planner between graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from earlytom.compression import Decision, noise_bound_for
from earlytom.exporter.onnx_export import SegmentFile
from earlytom.exporter.ort_executor import OrtExecutor
from earlytom.models.segments import StageModule
from earlytom.vision_path import Planner, VideoTokens, VisionPath, torch_executors


@dataclass(frozen=True)
class Thresholds:
    cosine: float  # minimum cosine similarity of every float output
    identical_selection: bool  # selected (frame, position) pairs must be identical
    near_tie: float  # a flipped Stage I decision whose reference margin is within this is a near-tie


def thresholds_for(precision: str) -> Thresholds:
    # Rounding alone can flip a comparison whose reference margin is within the measured noise of
    # the precision (ten times the largest deviation seen between backends).
    near_tie = noise_bound_for(precision)
    return Thresholds(0.999, True, near_tie) if precision == "float32" else Thresholds(0.99, False, near_tie)


@dataclass(frozen=True)
class Check:
    case: str  # "jobs.mp4 (32 frames)", "random frames (seed 0)"
    where: str  # a stage name, or "chain"
    output: str
    reference_shape: list[int]
    exported_shape: list[int]
    max_abs: float | None
    cosine: float | None
    selection_match: float | None  # fraction of reference pairs also selected by the export
    passed: bool
    reason: str = ""
    near_tie: bool = False  # a decision flip within rounding noise, reported apart (not a failure)


@dataclass(frozen=True)
class ValidationReport:
    precision: str
    thresholds: Thresholds
    cases: list[str]
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def near_tie_flips(self) -> list[Check]:
        return [check for check in self.checks if check.near_tie]

    def summary(self) -> dict[str, Any]:
        cosines = [c.cosine for c in self.checks if c.cosine is not None]
        return {
            "passed": self.passed,
            "precision": self.precision,
            "checks": len(self.checks),
            "failed": len(self.failures),
            "near_tie_flips": len(self.near_tie_flips),
            "min_cosine": min(cosines) if cosines else None,
            "cases": self.cases,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "thresholds": asdict(self.thresholds),
            "results": [asdict(check) for check in self.checks],
        }

    def describe_failures(self) -> str:
        return "; ".join(f"{c.case} {c.where}/{c.output}: {c.reason}" for c in self.failures)


def validate_segments(
    files: Sequence[SegmentFile],
    reference: Sequence[StageModule],
    cases: dict[str, torch.Tensor],
    planner: Planner,
    *,
    precision: str,
    tokens_per_frame: int,
) -> ValidationReport:
    """Compare ONNX Runtime with the fp32 torch reference on each case's pixel_values (T, 3, H, W).

    Each exported stage runs on the exact inputs its reference stage received, and the exported
    chain runs from pixels with the same planner; a chain that diverges only through a Stage I
    decision flipped within rounding noise is reported as a near-tie flip, never as a pass of a
    real mismatch.
    """
    thresholds = thresholds_for(precision)
    expected_path = VisionPath(torch_executors(reference), planner, tokens_per_frame=tokens_per_frame)
    executors = [OrtExecutor(file.path, file.spec) for file in files]
    exported_path = VisionPath(executors, planner, tokens_per_frame=tokens_per_frame)
    checks: list[Check] = []
    for case, pixels in cases.items():
        expected = expected_path.run(pixels, record=True)
        for record, executor in zip(expected.records, executors, strict=True):
            got = executor(record.inputs)
            checks.extend(_compare_outputs(case, record.name, record.outputs, got, thresholds))
        exported = exported_path.run(pixels)
        checks.extend(_compare_chains(case, expected, exported, thresholds))
    exported_path.release()
    return ValidationReport(precision, thresholds, list(cases), checks)


def _compare_outputs(
    case: str,
    where: str,
    expected: dict[str, torch.Tensor],
    got: dict[str, torch.Tensor],
    thresholds: Thresholds,
) -> list[Check]:
    checks = []
    index_match = None
    if "token_index" in expected:
        index_match = _index_check(case, where, expected["token_index"], got["token_index"], thresholds)
        checks.append(index_match)
    for name, reference in expected.items():
        if name == "token_index":
            continue
        rows = None
        if name == "video_tokens" and index_match is not None and not index_match.passed:
            continue  # rows do not correspond; the index check already failed
        if name == "video_tokens" and not thresholds.identical_selection:
            rows = _common_rows(expected["token_index"], got["token_index"])
        checks.append(_tensor_check(case, where, name, reference, got[name], thresholds, rows))
    return checks


def _compare_chains(
    case: str, expected: VideoTokens, got: VideoTokens, thresholds: Thresholds
) -> list[Check]:
    same_frames = got.frames_per_stage == expected.frames_per_stage
    expected_index, got_index = _token_index(expected), _token_index(got)
    same_selection = (
        expected_index is not None
        and got_index is not None
        and expected_index.shape == got_index.shape
        and torch.equal(expected_index, got_index)
    )
    if not same_frames or (thresholds.identical_selection and not same_selection):
        flip = first_flip(expected.decisions, got.decisions)
        if flip is not None and abs(flip.margin) <= thresholds.near_tie:
            reason = (
                f"near-tie flip: {flip.kind} at stage {flip.stage}, frames {list(flip.frames)}, reference "
                f"margin {flip.margin:+.2e} (within {thresholds.near_tie:.0e}); frames per stage "
                f"{list(got.frames_per_stage)} vs reference {list(expected.frames_per_stage)}"
            )
            frames = list(expected.frames_per_stage), list(got.frames_per_stage)
            return [Check(case, "chain", "decisions", *frames, None, None, None, True, reason, near_tie=True)]
        if not same_frames:
            why = "" if flip is None else f" after a {flip.kind} flip with margin {flip.margin:+.2e}"
            reason = (
                f"frames per stage {list(got.frames_per_stage)} != reference "
                f"{list(expected.frames_per_stage)}{why}"
            )
            return [Check(case, "chain", "frames_per_stage", list(expected.frames_per_stage),
                          list(got.frames_per_stage), None, None, None, False, reason)]  # fmt: skip
    outputs = {"video_tokens": expected.embeds}
    exported = {"video_tokens": got.embeds}
    if expected_index is not None and got_index is not None:
        outputs["token_index"], exported["token_index"] = expected_index, got_index
    return _compare_outputs(case, "chain", outputs, exported, thresholds)


def _token_index(tokens: VideoTokens) -> torch.Tensor | None:
    """(N, 2) (frame, position) pairs on the CPU, or None when every token was kept."""
    if tokens.frame_ids is None or tokens.positions is None:
        return None
    return torch.stack([tokens.frame_ids, tokens.positions], dim=1).cpu()


def first_flip(expected: Sequence[Decision], got: Sequence[Decision]) -> Decision | None:
    """The reference's first decision that the other side made differently (or did not reach)."""
    for ours, theirs in zip(expected, got, strict=False):
        if (ours.stage, ours.kind, ours.frames) != (theirs.stage, theirs.kind, theirs.frames):
            return ours
        if ours.outcome != theirs.outcome:
            return ours
    return None


def _index_check(
    case: str, where: str, expected: torch.Tensor, got: torch.Tensor, thresholds: Thresholds
) -> Check:
    reference_pairs = {tuple(p) for p in expected.tolist()}
    exported_pairs = {tuple(p) for p in got.tolist()}
    match = len(reference_pairs & exported_pairs) / max(len(reference_pairs), 1)
    identical = expected.shape == got.shape and torch.equal(expected, got)
    passed = identical or not thresholds.identical_selection
    reason = "" if passed else f"selected pairs differ ({match:.4f} of the reference's kept)"
    return Check(
        case, where, "token_index", list(expected.shape), list(got.shape), None, None, match, passed, reason
    )


def _common_rows(expected: torch.Tensor, got: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of video_tokens whose (frame, position) both sides selected (the newline row last)."""
    got_rows = {tuple(p): i for i, p in enumerate(got.tolist())}
    pairs = [(i, got_rows[tuple(p)]) for i, p in enumerate(expected.tolist()) if tuple(p) in got_rows]
    pairs.append((expected.shape[0], got.shape[0]))  # newline
    return torch.tensor([a for a, _ in pairs]), torch.tensor([b for _, b in pairs])


def _tensor_check(
    case: str,
    where: str,
    name: str,
    expected: torch.Tensor,
    got: torch.Tensor,
    thresholds: Thresholds,
    rows: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Check:
    shapes = list(expected.shape), list(got.shape)
    if rows is not None:
        expected, got = expected[rows[0]], got[rows[1]]
    if expected.shape != got.shape:
        return Check(case, where, name, *shapes, None, None, None, False, f"shape {shapes[1]} != {shapes[0]}")
    a, b = expected.double().flatten(), got.double().flatten()
    max_abs = float((a - b).abs().max()) if a.numel() else 0.0
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0)) if a.numel() else 1.0
    finite = bool(torch.isfinite(b).all())
    passed = finite and cosine >= thresholds.cosine
    reason = (
        ""
        if passed
        else ("non-finite values" if not finite else f"cosine {cosine:.6f} < {thresholds.cosine}")
    )
    return Check(case, where, name, *shapes, max_abs, cosine, None, passed, reason)

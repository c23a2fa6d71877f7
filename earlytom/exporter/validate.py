"""Exported segments vs the PyTorch reference in ONNX Runtime (DESIGN §7), by collecting.

Every case (real frames, random frames) is run twice: each ONNX segment on the exact inputs the
reference segment received, and the whole ONNX chain from pixels with the planner between
segments. Every output is compared (max-abs, cosine, selected pairs); all mismatches are gathered
and reported together. Polygraphy's comparator is not used: the checks need cosine similarity
and index equality, and the chain runs the planner between graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from earlytom.compression import MergePlanner
from earlytom.exporter.chain import ChainRun, OrtExecutor, TorchExecutor, run_chain
from earlytom.exporter.onnx_export import SegmentFile
from earlytom.models.segments import EncoderSegment, FinalSegment


@dataclass(frozen=True)
class Thresholds:
    cosine: float  # minimum cosine similarity of every float output
    identical_selection: bool  # selected (frame, position) pairs must be identical


THRESHOLDS = {"float32": Thresholds(0.999, True), "float16": Thresholds(0.99, False)}


@dataclass(frozen=True)
class Check:
    case: str  # "jobs.mp4 (32 frames)", "random frames (seed 0)"
    where: str  # a segment name, or "chain"
    output: str
    reference_shape: list[int]
    exported_shape: list[int]
    max_abs: float | None
    cosine: float | None
    selection_match: float | None  # fraction of reference pairs also selected by the export
    passed: bool
    reason: str = ""


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

    def summary(self) -> dict[str, Any]:
        cosines = [c.cosine for c in self.checks if c.cosine is not None]
        return {
            "passed": self.passed,
            "precision": self.precision,
            "checks": len(self.checks),
            "failed": len(self.failures),
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
    reference: Sequence[EncoderSegment | FinalSegment],
    cases: dict[str, torch.Tensor],
    planner: MergePlanner,
    *,
    precision: str,
    tokens_per_frame: int,
) -> ValidationReport:
    """Compare ONNX Runtime with the fp32 torch reference on each case's pixel_values (T, 3, H, W)."""
    thresholds = THRESHOLDS[precision]
    specs = [module.spec for module in reference]
    torch_chain = [TorchExecutor(module) for module in reference]
    ort_chain = [OrtExecutor(file.path, file.spec) for file in files]
    checks: list[Check] = []
    for case, pixels in cases.items():
        expected = run_chain(
            torch_chain, specs, pixels, planner, tokens_per_frame=tokens_per_frame, record=True
        )
        for record, executor in zip(expected.records, ort_chain, strict=True):
            got = executor(record.inputs)
            checks.extend(_compare_outputs(case, record.name, record.outputs, got, thresholds))
        exported = run_chain(ort_chain, specs, pixels, planner, tokens_per_frame=tokens_per_frame)
        checks.extend(_compare_chains(case, expected, exported, thresholds))
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


def _compare_chains(case: str, expected: ChainRun, got: ChainRun, thresholds: Thresholds) -> list[Check]:
    if got.frames_per_stage != expected.frames_per_stage:
        reason = (
            f"frames per stage {list(got.frames_per_stage)} != reference {list(expected.frames_per_stage)}"
        )
        return [Check(case, "chain", "frames_per_stage", list(expected.frames_per_stage),
                      list(got.frames_per_stage), None, None, None, False, reason)]  # fmt: skip
    outputs = {"video_tokens": expected.video_tokens, "token_index": expected.token_index}
    return _compare_outputs(
        case, "chain", outputs, {"video_tokens": got.video_tokens, "token_index": got.token_index}, thresholds
    )


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

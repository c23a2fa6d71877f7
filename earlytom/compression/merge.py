"""Frame merging inside the encoder (DESIGN §3, Stage I steps 2-3).

The planner works on host floats (a few dozen frames); the merge itself is one gather and one
blend on the device, so no per-token Python loop runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch

from earlytom.compression.decisions import MERGE_NEIGHBOUR, MERGE_THRESHOLD, Decision, check_tie_band, decide
from earlytom.compression.segments import Segment, segmentation_from_similarity
from earlytom.compression.similarity import SimilarityBand


@dataclass(frozen=True)
class Blend:
    """One output frame: weight·frame[first] + (1 - weight)·frame[second]."""

    first: int
    second: int
    weight: float = 1.0

    @staticmethod
    def keep(index: int) -> Blend:
        return Blend(index, index, 1.0)


@dataclass(frozen=True)
class MergeResult:
    hidden: torch.Tensor  # (T', S, D)
    scores: torch.Tensor | None  # (T', S) fp32, merged with the same weights
    segments: list[Segment]  # the segments of the input frames that drove the merge
    plan: tuple[Blend, ...]  # one Blend per output frame, in output order
    decisions: tuple[Decision, ...] = ()  # segmentation decisions, then merge decisions, as made


def merge_frames(
    hidden: torch.Tensor,
    scores: torch.Tensor | None = None,
    *,
    tau: float,
    ema: float = 0.9,
    max_window: int = 6,
    drop_last_middle: bool = True,
    tie_band: float = 0.0,
    stage: int = 0,
) -> MergeResult:
    """Segment the frames (T, S, D), merge each segment's similar middle frames, blend the scores alike.

    Comparisons with |margin| <= tie_band resolve as exact ties (no close, no merge); 0 is the
    released rule. `stage` only labels the recorded decisions.
    """
    num_frames = hidden.shape[0]
    if num_frames < 1:
        raise ValueError("merge_frames needs at least one frame")
    if scores is not None and scores.shape[0] != num_frames:
        raise ValueError(f"scores has {scores.shape[0]} frames, hidden has {num_frames}")
    band = SimilarityBand(hidden, max_offset=max_window - 1)
    segmentation = segmentation_from_similarity(
        band, num_frames, tau=tau, ema=ema, max_window=max_window, tie_band=tie_band, stage=stage
    )
    plan, decisions = plan_merge_with_decisions(
        band, segmentation.segments, drop_last_middle=drop_last_middle, tie_band=tie_band, stage=stage
    )
    return MergeResult(
        hidden=apply_plan(hidden, plan),
        scores=None if scores is None else apply_plan(scores, plan),
        segments=segmentation.segments,
        plan=plan,
        decisions=segmentation.decisions + decisions,
    )


def plan_merge(
    sim: Callable[[int, int], float],
    segments: list[Segment],
    *,
    drop_last_middle: bool = True,
    tie_band: float = 0.0,
) -> tuple[Blend, ...]:
    return plan_merge_with_decisions(sim, segments, drop_last_middle=drop_last_middle, tie_band=tie_band)[0]


def plan_merge_with_decisions(
    sim: Callable[[int, int], float],
    segments: list[Segment],
    *,
    drop_last_middle: bool = True,
    tie_band: float = 0.0,
    stage: int = 0,
) -> tuple[tuple[Blend, ...], tuple[Decision, ...]]:
    """The merge plan of every segment and the merge decisions, in the order the walk makes them."""
    tie_band = check_tie_band(tie_band)
    plan: list[Blend] = []
    decisions: list[Decision] = []
    for start, end in segments:
        plan.extend(_plan_segment(sim, start, end, drop_last_middle, _Recorder(tie_band, stage, decisions)))
    return tuple(plan), tuple(decisions)


@dataclass(frozen=True)
class _Recorder:
    """Makes merge comparisons with the band and appends them to `log`."""

    tie_band: float
    stage: int
    log: list[Decision]

    def greater(self, kind: str, frames: tuple[int, ...], lhs: float, rhs: float) -> bool:
        decision = decide(kind, frames, lhs, rhs, tie_band=self.tie_band, stage=self.stage)
        self.log.append(decision)
        return decision.outcome


def _plan_segment(
    sim: Callable[[int, int], float], start: int, end: int, drop_last_middle: bool, record: _Recorder
) -> list[Blend]:
    if end - start + 1 <= 2:
        return [Blend.keep(i) for i in range(start, end + 1)]
    middle = list(range(start + 1, end))
    if len(middle) < 2:
        return [Blend.keep(start), *(Blend.keep(i) for i in middle), Blend.keep(end)]
    threshold = sim(start, end)  # τ_m: how alike the segment's two ends are
    pair = [sim(a, b) for a, b in pairwise(middle)]  # s_j = sim(G_j, G_j+1)
    last = len(middle) - 1
    plan = [Blend.keep(start)]
    i = 0
    while i < last:
        g = middle[i]
        # Short-circuit as released: the neighbour comparison is made (and recorded) only when
        # the threshold one passed; a comparison never made cannot flip.
        merge = record.greater(MERGE_THRESHOLD, (g, g + 1, start, end), pair[i], threshold)
        if i + 1 < last:
            merge = merge and record.greater(MERGE_NEIGHBOUR, (g, g + 1, g + 2), pair[i], pair[i + 1])
            weight = pair[i] / (pair[i] + pair[i + 1]) if merge else 1.0
        else:  # last pair: no right neighbour to compare with
            weight = 1.0
        if merge:
            plan.append(Blend(g, g + 1, weight))
            i += 2
        else:
            plan.append(Blend.keep(g))
            i += 1
    # The released walk stops at i = L-1 without emitting G_{L-1}; that quirk produced the paper's
    # numbers, so it stays the default.
    if i == last and not drop_last_middle:
        plan.append(Blend.keep(middle[last]))
    plan.append(Blend.keep(end))
    return plan


def apply_plan(frames: torch.Tensor, plan: tuple[Blend, ...]) -> torch.Tensor:
    """frames (T, ...) -> (len(plan), ...): the blend of each Blend, computed in fp32."""
    device = frames.device
    first = torch.tensor([b.first for b in plan], dtype=torch.long, device=device)
    if all(b.weight == 1.0 for b in plan):
        return frames.index_select(0, first)
    second = torch.tensor([b.second for b in plan], dtype=torch.long, device=device)
    weight = torch.tensor([b.weight for b in plan], dtype=torch.float32, device=device)
    weight = weight.view(-1, *([1] * (frames.dim() - 1)))  # (T', 1, ...) broadcast over tokens
    blended = frames.index_select(0, first).float() * weight + frames.index_select(0, second).float() * (
        1 - weight
    )
    return blended.to(frames.dtype)

"""The merge planner: what runs between encoder segments, whatever executes the segments.

Torch modules, ONNX Runtime sessions and TensorRT contexts all hand their outputs here; the
planner merges frames with `merge_frames` and, after the last prune layer, turns the final
groups into the inputs of the TokenSelect op (frame kinds, budget, token slots). Every float
decision it makes is recorded with its margin (see `decisions`), labelled with the caller's stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from earlytom.compression.decisions import Decision, check_tie_band
from earlytom.compression.merge import Blend, MergeResult, merge_frames
from earlytom.compression.segments import Segment, segment_with_decisions
from earlytom.compression.selection import (
    exact_count,
    frame_kinds,
    frames_needed,
    selected_count,
    token_budget,
)


@dataclass(frozen=True)
class SelectionInputs:
    groups: list[Segment]  # final segmentation of the T' frames
    frame_kind: torch.Tensor  # (T',) int64: 0 dynamic, 1 static
    budget: torch.Tensor  # (2,) int64: k_d, k_s
    token_slots: torch.Tensor  # (N,) int64: 0..N-1; TokenSelect reads only its length
    # The exact budget's N* differs from what the released rule keeps: the select stage reconciles.
    decisions: tuple[Decision, ...] = ()  # the close decisions of the final grouping


class MergePlanner:
    """Stage I merges and Stage II selection inputs for one EarlyTom setting.

    tie_band: comparisons with |margin| <= tie_band resolve as exact ties (no close, no merge);
    0 is the released rule, `tie_band_for(dtype)` the band for a precision.
    budget: "faithful" (the released N) or "exact" (N* = ceil(r·B·P); a merge that would leave
    fewer frames than N* needs is not applied).
    """

    def __init__(
        self,
        *,
        tau: float,
        ema: float,
        max_window: int,
        drop_last_middle: bool,
        retention: float,
        tie_band: float = 0.0,
        budget: str = "faithful",
    ) -> None:
        self.tau, self.ema, self.max_window = tau, ema, max_window
        self.drop_last_middle = drop_last_middle
        self.retention = retention
        self.tie_band = check_tie_band(tie_band)
        if budget not in ("faithful", "exact"):
            raise ValueError(f"unknown budget {budget!r}")
        self.budget = budget

    def min_frames(self, *, base_frames: int, tokens_per_frame: int) -> int:
        """Frames Stage I must leave: ceil(N*/P) for the exact budget, else 1."""
        if self.budget != "exact":
            return 1
        count = exact_count(tokens_per_frame, base_frames, retention=self.retention)
        return frames_needed(count, tokens_per_frame)

    def merge(
        self,
        hidden: torch.Tensor,
        scores: torch.Tensor | None = None,
        *,
        stage: int = 0,
        min_frames: int = 1,
    ) -> MergeResult:
        """hidden (T, S, D) [+ scores (T, S)] after prune layer number `stage` -> the merged frames.

        A merge that would leave fewer than `min_frames` frames is not applied (its decisions are
        still recorded): the frames pass unchanged.
        """
        merged = merge_frames(
            hidden,
            scores,
            tau=self.tau,
            ema=self.ema,
            max_window=self.max_window,
            drop_last_middle=self.drop_last_middle,
            tie_band=self.tie_band,
            stage=stage,
        )
        if merged.hidden.shape[0] >= min_frames:
            return merged
        kept = tuple(Blend.keep(i) for i in range(hidden.shape[0]))
        return MergeResult(hidden, scores, merged.segments, kept, merged.decisions)

    def selection_inputs(
        self, hidden: torch.Tensor, *, base_frames: int, tokens_per_frame: int, stage: int = 0
    ) -> SelectionInputs:
        """Group the merged frames (T', S, D) and size the selection (P tokens per pooled frame).

        `stage` labels the grouping's decisions: len(prune_layers) by convention.
        """
        num_frames = hidden.shape[0]
        grouping = segment_with_decisions(
            hidden,
            tau=self.tau,
            ema=self.ema,
            max_window=self.max_window,
            tie_band=self.tie_band,
            stage=stage,
        )
        kinds = frame_kinds(grouping.segments, num_frames)
        budget = token_budget(tokens_per_frame, num_frames, retention=self.retention, base_frames=base_frames)
        count = (
            exact_count(tokens_per_frame, base_frames, retention=self.retention)
            if self.budget == "exact"
            else selected_count(kinds, budget)
        )
        return SelectionInputs(
            groups=grouping.segments,
            frame_kind=torch.tensor(kinds, dtype=torch.int64, device=hidden.device),
            budget=torch.tensor([budget.dynamic, budget.static], dtype=torch.int64, device=hidden.device),
            token_slots=torch.arange(count, dtype=torch.int64, device=hidden.device),
            decisions=grouping.decisions,
        )

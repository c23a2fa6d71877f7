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
from earlytom.compression.merge import MergeResult, merge_frames
from earlytom.compression.segments import Segment, segment_with_decisions
from earlytom.compression.selection import frame_kinds, selected_count, token_budget


@dataclass(frozen=True)
class SelectionInputs:
    groups: list[Segment]  # final segmentation of the T' frames
    frame_kind: torch.Tensor  # (T',) int64: 0 dynamic, 1 static
    budget: torch.Tensor  # (2,) int64: k_d, k_s
    token_slots: torch.Tensor  # (N,) int64: 0..N-1; TokenSelect reads only its length
    decisions: tuple[Decision, ...] = ()  # the close decisions of the final grouping


class MergePlanner:
    """Stage I merges and Stage II selection inputs for one EarlyTom setting.

    tie_band: comparisons with |margin| <= tie_band resolve as exact ties (no close, no merge);
    0 is the released rule, `tie_band_for(dtype)` the band for a precision.
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
    ) -> None:
        self.tau, self.ema, self.max_window = tau, ema, max_window
        self.drop_last_middle = drop_last_middle
        self.retention = retention
        self.tie_band = check_tie_band(tie_band)

    def merge(
        self, hidden: torch.Tensor, scores: torch.Tensor | None = None, *, stage: int = 0
    ) -> MergeResult:
        """hidden (T, S, D) [+ scores (T, S)] after prune layer number `stage` -> the merged frames."""
        return merge_frames(
            hidden,
            scores,
            tau=self.tau,
            ema=self.ema,
            max_window=self.max_window,
            drop_last_middle=self.drop_last_middle,
            tie_band=self.tie_band,
            stage=stage,
        )

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
        return SelectionInputs(
            groups=grouping.segments,
            frame_kind=torch.tensor(kinds, dtype=torch.int64, device=hidden.device),
            budget=torch.tensor([budget.dynamic, budget.static], dtype=torch.int64, device=hidden.device),
            token_slots=torch.arange(selected_count(kinds, budget), dtype=torch.int64, device=hidden.device),
            decisions=grouping.decisions,
        )

"""The merge planner: what runs between encoder segments, whatever executes the segments.

Torch modules, ONNX Runtime sessions and TensorRT contexts all hand their outputs here; the
planner merges frames with `merge_frames` and, after the last prune layer, turns the final
groups into the inputs of the TokenSelect op (frame kinds, budget, token slots).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from earlytom.compression.merge import MergeResult, merge_frames
from earlytom.compression.segments import Segment, segment_frames
from earlytom.compression.selection import frame_kinds, selected_count, token_budget


@dataclass(frozen=True)
class SelectionInputs:
    groups: list[Segment]  # final segmentation of the T' frames
    frame_kind: torch.Tensor  # (T',) int64: 0 dynamic, 1 static
    budget: torch.Tensor  # (2,) int64: k_d, k_s
    token_slots: torch.Tensor  # (N,) int64: 0..N-1; TokenSelect reads only its length


class MergePlanner:
    """Stage I merges and Stage II selection inputs for one EarlyTom setting."""

    def __init__(
        self, *, tau: float, ema: float, max_window: int, drop_last_middle: bool, retention: float
    ) -> None:
        self.tau, self.ema, self.max_window = tau, ema, max_window
        self.drop_last_middle = drop_last_middle
        self.retention = retention

    def merge(self, hidden: torch.Tensor, scores: torch.Tensor | None = None) -> MergeResult:
        """hidden (T, S, D) [+ scores (T, S)] after a prune layer -> the merged frames."""
        return merge_frames(
            hidden,
            scores,
            tau=self.tau,
            ema=self.ema,
            max_window=self.max_window,
            drop_last_middle=self.drop_last_middle,
        )

    def selection_inputs(
        self, hidden: torch.Tensor, *, base_frames: int, tokens_per_frame: int
    ) -> SelectionInputs:
        """Group the merged frames (T', S, D) and size the selection (P tokens per pooled frame)."""
        num_frames = hidden.shape[0]
        groups = segment_frames(hidden, tau=self.tau, ema=self.ema, max_window=self.max_window)
        kinds = frame_kinds(groups, num_frames)
        budget = token_budget(tokens_per_frame, num_frames, retention=self.retention, base_frames=base_frames)
        return SelectionInputs(
            groups=groups,
            frame_kind=torch.tensor(kinds, dtype=torch.int64, device=hidden.device),
            budget=torch.tensor([budget.dynamic, budget.static], dtype=torch.int64, device=hidden.device),
            token_slots=torch.arange(selected_count(kinds, budget), dtype=torch.int64, device=hidden.device),
        )

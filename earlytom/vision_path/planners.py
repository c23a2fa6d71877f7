"""What runs between encoder segments: EarlyTom's merge planner, or a variant that never merges.

Every planner answers two questions: how the frames change after an encoder segment (`merge`,
only asked when `merges`), and what the select stage keeps (`selection_inputs`; None keeps every
token). EarlyTom merges and selects per group; the post-encoder baseline keeps each frame's top
ceil(P·r) tokens (every frame dynamic); the stock model keeps everything.
"""

from __future__ import annotations

from typing import Protocol

import torch

from earlytom.compression import DYNAMIC, MergePlanner, MergeResult, SelectionInputs, token_budget
from earlytom.config import EarlyTomConfig


class Planner(Protocol):
    merges: bool
    tie_band: float  # Stage I comparisons within it resolve as exact ties (0: the released rule)

    def merge(
        self, hidden: torch.Tensor, scores: torch.Tensor | None = None, *, stage: int = 0, min_frames: int = 1
    ) -> MergeResult: ...

    def min_frames(self, *, base_frames: int, tokens_per_frame: int) -> int: ...

    def selection_inputs(
        self, hidden: torch.Tensor, *, base_frames: int, tokens_per_frame: int, stage: int = 0
    ) -> SelectionInputs | None: ...


class EarlyTomPlanner(MergePlanner):
    """Stage I merges after each prune layer and Stage II's per-group selection inputs."""

    merges = True


class PostEncoderPlanner:
    """No merging; every frame dynamic with k = ceil(P·r) tokens (plain per-frame top-k)."""

    merges = False
    tie_band = 0.0  # no Stage I decision to band

    def __init__(self, retention: float) -> None:
        self.retention = retention

    def merge(
        self, hidden: torch.Tensor, scores: torch.Tensor | None = None, *, stage: int = 0, min_frames: int = 1
    ) -> MergeResult:
        raise RuntimeError("the post-encoder baseline never merges frames")

    def min_frames(self, *, base_frames: int, tokens_per_frame: int) -> int:
        return base_frames

    def selection_inputs(
        self, hidden: torch.Tensor, *, base_frames: int, tokens_per_frame: int, stage: int = 0
    ) -> SelectionInputs:
        frames, device = hidden.shape[0], hidden.device
        budget = token_budget(tokens_per_frame, frames, retention=self.retention, base_frames=frames)
        return SelectionInputs(
            groups=[(t, t) for t in range(frames)],
            frame_kind=torch.full((frames,), DYNAMIC, dtype=torch.int64, device=device),
            budget=torch.tensor([budget.dynamic, budget.static], dtype=torch.int64, device=device),
            token_slots=torch.arange(frames * budget.dynamic, dtype=torch.int64, device=device),
        )


class StockPlanner:
    """Compression off: no merging, no selection (the select stage keeps every pooled token)."""

    merges = False
    tie_band = 0.0

    def merge(
        self, hidden: torch.Tensor, scores: torch.Tensor | None = None, *, stage: int = 0, min_frames: int = 1
    ) -> MergeResult:
        raise RuntimeError("the stock model never merges frames")

    def min_frames(self, *, base_frames: int, tokens_per_frame: int) -> int:
        return base_frames

    def selection_inputs(
        self, hidden: torch.Tensor, *, base_frames: int, tokens_per_frame: int, stage: int = 0
    ) -> None:
        return None


def planner_for(config: EarlyTomConfig, method: str = "earlytom", *, tie_band: float = 0.0) -> Planner:
    """The planner of `method` for `config`; `tie_band` resolves near-ties of Stage I's comparisons."""
    if not config.enabled or method == "stock":
        return StockPlanner()
    if method == "post-encoder":
        return PostEncoderPlanner(config.retention)
    return EarlyTomPlanner(
        tau=config.tau,
        ema=config.ema,
        max_window=config.max_window,
        drop_last_middle=config.drop_last_middle,
        retention=config.retention,
        tie_band=tie_band,
        budget=config.budget,
    )

"""The EarlyTom algorithm in pure torch (DESIGN §3). Never imports transformers."""

from earlytom.compression.merge import Blend, MergeResult, apply_plan, merge_frames, plan_merge
from earlytom.compression.planner import MergePlanner, SelectionInputs
from earlytom.compression.segments import Segment, segment_frames, segments_from_similarity
from earlytom.compression.selection import (
    DYNAMIC,
    STATIC,
    TokenBudget,
    TokenSelection,
    frame_kinds,
    select_tokens,
    selected_count,
    selection_mask,
    static_windows,
    token_budget,
)
from earlytom.compression.similarity import SimilarityBand, frame_similarity

__all__ = [
    "DYNAMIC",
    "STATIC",
    "Blend",
    "MergePlanner",
    "MergeResult",
    "Segment",
    "SelectionInputs",
    "SimilarityBand",
    "TokenBudget",
    "TokenSelection",
    "apply_plan",
    "frame_kinds",
    "frame_similarity",
    "merge_frames",
    "plan_merge",
    "segment_frames",
    "segments_from_similarity",
    "select_tokens",
    "selected_count",
    "selection_mask",
    "static_windows",
    "token_budget",
]

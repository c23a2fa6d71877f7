"""The EarlyTom algorithm in pure torch (DESIGN §3). Never imports transformers."""

from earlytom.compression.decisions import (
    MERGE_NEIGHBOUR,
    MERGE_THRESHOLD,
    SEGMENT_CLOSE,
    TIE_BANDS,
    Decision,
    changed_count,
    tie_band_for,
)
from earlytom.compression.merge import (
    Blend,
    MergeResult,
    apply_plan,
    merge_frames,
    plan_merge,
    plan_merge_with_decisions,
)
from earlytom.compression.planner import MergePlanner, SelectionInputs
from earlytom.compression.segments import (
    Segment,
    Segmentation,
    segment_frames,
    segment_with_decisions,
    segmentation_from_similarity,
    segments_from_similarity,
)
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
    "MERGE_NEIGHBOUR",
    "MERGE_THRESHOLD",
    "SEGMENT_CLOSE",
    "STATIC",
    "TIE_BANDS",
    "Blend",
    "Decision",
    "MergePlanner",
    "MergeResult",
    "Segment",
    "Segmentation",
    "SelectionInputs",
    "SimilarityBand",
    "TokenBudget",
    "TokenSelection",
    "apply_plan",
    "changed_count",
    "frame_kinds",
    "frame_similarity",
    "merge_frames",
    "plan_merge",
    "plan_merge_with_decisions",
    "segment_frames",
    "segment_with_decisions",
    "segmentation_from_similarity",
    "segments_from_similarity",
    "select_tokens",
    "selected_count",
    "selection_mask",
    "static_windows",
    "tie_band_for",
    "token_budget",
]

"""`earlytom::token_select`: Stage II as one op (DESIGN §4).

Inputs: pooled features (T, P, C), pooled scores (T, P) fp32, frame_kind (T,) int64 (0 dynamic,
1 static), budget (2,) int64 = (k_d, k_s) and token_slots (N,) int64. Outputs: the kept tokens
(N, C) and their (frame, position) pairs (N, 2) int64, in row-major (frame, raster) order.

N is known to the planner before the op runs (`selected_count`). It enters as the *length* of
`token_slots` (the values are not read), so every output shape is a function of input shapes: no
backend needs a data-dependent output (TensorRT: no size tensor, no output allocator).

The budget is an input rather than computed in the graph: the released code computes
ceil(P·r·B/T') in float64, which TensorRT cannot represent, and float32 gives a different k_d in
real cases (r 0.25, B 32, T' 28: 57 instead of 56). The planner computes it with `token_budget`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from earlytom.compression.selection import TokenBudget, selection_mask


@dataclass(frozen=True)
class TokenSelectSpec:
    """The one description of the op that the ONNX node, its function body and the plugin share."""

    domain: str = "earlytom"
    op_type: str = "EarlyTomTokenSelect"
    plugin_namespace: str = "earlytom"
    plugin_version: str = "1"
    inputs: tuple[str, ...] = ("features", "scores", "frame_kind", "budget", "token_slots")
    outputs: tuple[str, ...] = ("tokens", "token_index")


TOKEN_SELECT = TokenSelectSpec()


@torch.library.custom_op("earlytom::token_select", mutates_args=())
def token_select(
    features: torch.Tensor,
    scores: torch.Tensor,
    frame_kind: torch.Tensor,
    budget: torch.Tensor,
    token_slots: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """features (T, P, C), scores (T, P), frame_kind (T,), budget (2,), token_slots (N,) -> (N, C), (N, 2)."""
    dynamic, static = (int(k) for k in budget.tolist())
    keep = selection_mask(scores, frame_kind, TokenBudget(dynamic=dynamic, static=static))  # (T, P)
    index = keep.nonzero()  # (N, 2): row-major, frames in time, tokens in raster order
    if index.shape[0] != token_slots.shape[0]:
        raise ValueError(
            f"token_slots has length {token_slots.shape[0]} but the budget keeps {index.shape[0]} tokens"
        )
    return features[index[:, 0], index[:, 1]], index


@token_select.register_fake
def _token_select_fake(
    features: torch.Tensor,
    scores: torch.Tensor,
    frame_kind: torch.Tensor,
    budget: torch.Tensor,
    token_slots: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    count = token_slots.shape[0]
    return features.new_empty(count, features.shape[2]), features.new_empty(count, 2, dtype=torch.int64)

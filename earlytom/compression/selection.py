"""Decoupled spatial token selection after the encoder (DESIGN §3, Stage II).

Per final group, head and tail frames are *dynamic* (top-k by received attention) and the middle
frames *static* (one arg-max token per contiguous raster window). Because groups tile the frames
in time order and every frame's tokens are emitted in raster order, the output order
"head, statics, tail; groups in time order" is simply row-major order over (frame, position):
the selection is a (T, P) boolean mask and its nonzero() is the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from earlytom.compression.segments import Segment

DYNAMIC, STATIC = 0, 1


@dataclass(frozen=True)
class TokenBudget:
    dynamic: int  # k_d tokens per dynamic frame
    static: int  # k_s tokens per static frame


@dataclass(frozen=True)
class TokenSelection:
    tokens: torch.Tensor  # (N, C)
    frame_ids: torch.Tensor  # (N,) int64
    positions: torch.Tensor  # (N,) int64, raster index in the pooled grid


def token_budget(
    tokens_per_frame: int, num_frames: int, *, retention: float, base_frames: int
) -> TokenBudget:
    """k_d = ceil(P·r̂), k_s = max(1, round(P·r̂)) with r̂ = min(r·B/T', 1)."""
    scaled = min(retention * base_frames / num_frames, 1.0)
    dynamic = min(math.ceil(tokens_per_frame * scaled), tokens_per_frame)
    static = min(max(1, round(tokens_per_frame * scaled)), tokens_per_frame)
    return TokenBudget(dynamic=dynamic, static=static)


def exact_count(tokens_per_frame: int, base_frames: int, *, retention: float) -> int:
    """N* = ceil(r·B·P), at least 1: the exact-count budget, known before the encoder runs.

    The product is rounded to 9 decimals first, so that 0.1·32·196 = 627.2000000000001 is 628,
    not 629, on every platform.
    """
    return max(1, math.ceil(round(retention * base_frames * tokens_per_frame, 9)))


def frames_needed(count: int, tokens_per_frame: int) -> int:
    """The fewest frames that hold `count` tokens: Stage I never merges below it (exact budget)."""
    return -(-count // tokens_per_frame)


def reconcile_mask(keep: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """The keep-mask (T, P) made to hold exactly `count` tokens, by score.

    A surplus drops the lowest-scored kept tokens; a shortfall adds the best-scored tokens not
    kept. Ranking: kept before not kept, then by score, descending; equal scores go to the lower
    (frame, position). The tokens are then read in row-major order, so the group order stays.
    """
    num_frames, tokens_per_frame = keep.shape
    if not 1 <= count <= num_frames * tokens_per_frame:
        raise ValueError(f"cannot keep {count} tokens of {num_frames}×{tokens_per_frame}")
    flat_keep, flat_scores = keep.flatten(), scores.float().flatten()  # (T·P,)
    by_score = torch.sort(flat_scores, descending=True, stable=True).indices
    dropped_last = torch.sort((~flat_keep[by_score]).to(torch.uint8), stable=True).indices
    chosen = by_score[dropped_last][:count]
    return torch.zeros_like(flat_keep).scatter_(0, chosen, True).view(num_frames, tokens_per_frame)


def frame_kinds(groups: list[Segment], num_frames: int) -> list[int]:
    """DYNAMIC or STATIC per frame: groups of <= 2 frames are all dynamic, else head/tail dynamic."""
    _check_groups(groups, num_frames)
    kinds = [DYNAMIC] * num_frames
    for start, end in groups:
        for frame in range(start + 1, end) if end - start + 1 >= 3 else ():
            kinds[frame] = STATIC
    return kinds


def selected_count(kinds: list[int], budget: TokenBudget) -> int:
    """N: every dynamic frame keeps exactly k_d tokens and every static frame k_s."""
    static = sum(kind == STATIC for kind in kinds)
    return (len(kinds) - static) * budget.dynamic + static * budget.static


def static_windows(tokens_per_frame: int, count: int) -> list[tuple[int, int]]:
    """`count` contiguous [start, stop) windows tiling 0..P-1; the first P mod count are one longer."""
    base, extra = divmod(tokens_per_frame, count)
    windows, start = [], 0
    for w in range(count):
        stop = start + base + (1 if w < extra else 0)
        windows.append((start, stop))
        start = stop
    return windows


def select_tokens(
    features: torch.Tensor,
    scores: torch.Tensor,
    groups: list[Segment],
    *,
    retention: float,
    base_frames: int,
    count: int | None = None,
) -> TokenSelection:
    """Pick tokens from pooled features (T, P, C) by pooled scores (T, P); ties go to the lower index.

    `count` (the exact budget's N*) reconciles the released selection to exactly that many tokens.
    """
    num_frames, tokens_per_frame, _ = features.shape
    if scores.shape != (num_frames, tokens_per_frame):
        raise ValueError(f"scores must be {(num_frames, tokens_per_frame)}, got {tuple(scores.shape)}")
    budget = token_budget(tokens_per_frame, num_frames, retention=retention, base_frames=base_frames)
    kinds = torch.tensor(frame_kinds(groups, num_frames), device=features.device)
    keep = selection_mask(scores, kinds, budget)  # (T, P)
    if count is not None:
        keep = reconcile_mask(keep, scores, count)
    frame_ids, positions = keep.nonzero(as_tuple=True)  # row-major: frames in time, tokens in raster order
    return TokenSelection(tokens=features[frame_ids, positions], frame_ids=frame_ids, positions=positions)


def selection_mask(scores: torch.Tensor, kinds: torch.Tensor, budget: TokenBudget) -> torch.Tensor:
    """(T, P) keep-mask: top-k_d of dynamic frames, one arg-max per raster window of static frames."""
    num_frames, tokens_per_frame = scores.shape
    device = scores.device
    scores = scores.float()

    # Dynamic: top-k_d by score; a stable descending sort makes ties deterministic (lowest index).
    ranked = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, : budget.dynamic]  # (T, k_d)
    dynamic = torch.zeros(num_frames, tokens_per_frame, dtype=torch.bool, device=device)
    dynamic.scatter_(1, ranked, True)

    # Static: arg-max inside each raster window, windows padded to one length and masked.
    windows = static_windows(tokens_per_frame, budget.static)
    width = max(stop - start for start, stop in windows)
    window_positions = torch.tensor(
        [[min(start + j, stop - 1) for j in range(width)] for start, stop in windows], device=device
    )  # (k_s, width); padding repeats the window's last position
    valid = torch.tensor([[start + j < stop for j in range(width)] for start, stop in windows], device=device)
    windowed = scores[:, window_positions].masked_fill(~valid, float("-inf"))  # (T, k_s, width)
    best = windowed.argmax(dim=-1)  # (T, k_s): argmax returns the first maximum
    picked = window_positions.gather(1, best.T).T  # (T, k_s)
    static = torch.zeros_like(dynamic).scatter_(1, picked, True)

    return torch.where((kinds == STATIC)[:, None], static, dynamic)  # (T, P)


def _check_groups(groups: list[Segment], num_frames: int) -> None:
    expected = 0
    for start, end in groups:
        if start != expected or end < start:
            raise ValueError(f"groups {groups} must tile frames 0..{num_frames - 1} in order")
        expected = end + 1
    if expected != num_frames:
        raise ValueError(f"groups {groups} must tile frames 0..{num_frames - 1} in order")

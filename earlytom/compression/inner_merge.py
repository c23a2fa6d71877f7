"""Stage III: the inner-LLM merge of HoliTom (DESIGN §3), on one sequence of decoder hidden states.

At decoder layer K the last prompt token's attention to the visual span (mean over heads, taken at
layer K-1) picks the visual tokens to keep; every other visual token is folded into its most
cosine-similar kept token and deleted. Rules, as in HoliTom's released `Qwen2Model_holitom`:

- keep count: Python `round(n · (1 - ratio))` (banker's rounding: 627 tokens at 0.5 keep 314),
  raised to 1 so a dropped token always has a home;
- kept: the highest attention; ties go to the lower index (HoliTom's `topk` leaves ties
  unspecified); kept tokens stay in their original order and keep their original positions;
- target of a dropped token: argmax of the cosine to the kept tokens' states *before any fold*
  (HoliTom computes the similarity matrix once, before its loop); ties go to the lower index;
- fold: dropped tokens in increasing index order, each h_k ← (h_k + h_j) / 2 on the *current*
  (already folded) kept state, in the hidden dtype. So a kept token that receives j_1 < … < j_m
  ends as h_k/2^m + Σ_i h_{j_i}/2^{m-i+1}: later tokens weigh more.

Deviation: cosines are computed in fp32 (HoliTom uses the model dtype), which only matters when two
kept tokens are within fp16 rounding of each other.

The fold runs in rounds, not one Python step per dropped token: round r applies the r-th fold of
every kept token at once (targets within a round are distinct), so each kept state sees exactly the
sequential loop's operations in the same order and the result is bitwise equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class InnerMergeResult:
    hidden: torch.Tensor  # (1, L', C): the sequence with dropped visual tokens removed
    positions: torch.Tensor  # (L',) int64: original position of each remaining row
    kept: torch.Tensor  # (V_k,) int64: original positions of the kept visual tokens, increasing
    dropped: torch.Tensor  # (V_d,) int64: original positions of the dropped visual tokens, increasing
    targets: torch.Tensor  # (V_d,) int64: original position of the kept token each one folded into

    @property
    def num_dropped(self) -> int:
        return int(self.dropped.numel())


def kept_count(span_length: int, ratio: float) -> int:
    """How many of `span_length` visual tokens survive a merge that drops the fraction `ratio`."""
    if span_length == 0:
        return 0
    return min(span_length, max(1, round(span_length * (1.0 - ratio))))


def choose_kept(attention: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (keep,) of the largest values of `attention` (n,), ties to the lower index, increasing."""
    # A stable descending sort keeps equal values in index order, so the lower index wins a tie.
    order = torch.sort(attention, descending=True, stable=True).indices
    return order[:keep].sort().values


def fold_targets(dropped: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """For dropped (V_d, C) and kept (V_k, C) states: index (V_d,) of each one's most similar kept row."""
    sim = F.normalize(dropped.float(), dim=-1) @ F.normalize(kept.float(), dim=-1).T  # (V_d, V_k)
    return sim.argmax(dim=-1)  # argmax returns the first maximum: ties go to the lower index


def fold_rounds(targets: torch.Tensor, groups: int) -> torch.Tensor:
    """rank (V_d,): how many earlier dropped tokens (lower index) share each token's target."""
    order = torch.sort(targets, stable=True).indices  # grouped by target, increasing index inside
    counts = torch.bincount(targets, minlength=groups)  # (V_k,)
    first = torch.cumsum(counts, 0) - counts  # (V_k,) start of each group in `order`
    rank = torch.empty_like(targets)
    rank[order] = torch.arange(targets.numel(), device=targets.device) - first[targets[order]]
    return rank


def fold_visual_tokens(
    hidden: torch.Tensor, span: tuple[int, int], attention: torch.Tensor, ratio: float
) -> InnerMergeResult:
    """Merge the visual span [start, stop) of `hidden` (1, L, C), given the last prompt token's
    attention (stop - start,) to it, dropping the fraction `ratio` (HoliTom's rules above)."""
    if hidden.dim() != 3 or hidden.shape[0] != 1:
        raise ValueError(f"hidden must be (1, L, C) for one sequence, got {tuple(hidden.shape)}")
    start, stop = span
    length = hidden.shape[1]
    if not 0 <= start <= stop <= length:
        raise ValueError(f"visual span [{start}, {stop}) does not fit a sequence of {length}")
    if attention.shape != (stop - start,):
        raise ValueError(f"attention has shape {tuple(attention.shape)}, the span has {stop - start} tokens")
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio={ratio} must be in [0, 1)")
    device = hidden.device
    span_len = stop - start
    kept_rel = choose_kept(attention, kept_count(span_len, ratio))  # (V_k,)
    is_dropped = torch.ones(span_len, dtype=torch.bool, device=device)
    is_dropped[kept_rel] = False
    dropped_rel = torch.nonzero(is_dropped).flatten()  # (V_d,) increasing

    visual = hidden[0, start:stop]  # (V, C)
    kept_states = visual[kept_rel].clone()  # (V_k, C): the fold writes into these
    targets = torch.empty(0, dtype=torch.long, device=device)
    if dropped_rel.numel() > 0:
        dropped_states = visual[dropped_rel]  # (V_d, C), never modified
        targets = fold_targets(dropped_states, kept_states)  # (V_d,) into kept_rel
        rank = fold_rounds(targets, kept_rel.numel())
        for r in range(int(rank.max()) + 1):
            sel = torch.nonzero(rank == r).flatten()  # at most one dropped token per kept token
            into = targets[sel]
            kept_states[into] = (kept_states[into] + dropped_states[sel]) / 2

    positions = torch.cat(
        [
            torch.arange(start, device=device),
            kept_rel + start,
            torch.arange(stop, length, device=device),
        ]
    )
    merged = torch.cat([hidden[:, :start], kept_states[None], hidden[:, stop:]], dim=1)  # (1, L', C)
    return InnerMergeResult(
        hidden=merged,
        positions=positions,
        kept=kept_rel + start,
        dropped=dropped_rel + start,
        targets=kept_rel[targets] + start,
    )

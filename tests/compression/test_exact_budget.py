"""The exact-count Stage II budget: N* fixed by (r, B, P), reconciled by score, merges floored."""

from __future__ import annotations

import random

import pytest
import torch

from earlytom.compression import (
    MergePlanner,
    exact_count,
    frame_kinds,
    frames_needed,
    reconcile_mask,
    select_tokens,
    selection_mask,
    token_budget,
)
from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import ConfigError

P = 196


def test_exact_count_is_a_function_of_r_b_p() -> None:
    assert exact_count(P, 32, retention=0.1) == 628  # ceil(627.2)
    assert exact_count(P, 32, retention=0.25) == 1568  # exactly r·B·P, no float round-up
    assert exact_count(P, 16, retention=0.15) == 471  # ceil(470.4)
    assert exact_count(P, 1, retention=0.001) == 1
    assert exact_count(P, 32, retention=1.0) == 32 * P
    assert frames_needed(628, P) == 4 and frames_needed(588, P) == 3 and frames_needed(1, P) == 1


def test_reconcile_trims_lowest_scored_and_fills_best_unkept() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.7]])
    keep = torch.tensor([[True, True, False, False], [False, True, False, True]])
    trimmed = reconcile_mask(keep, scores, 2)
    assert trimmed.tolist() == [[True, False, False, False], [False, True, False, False]]
    filled = reconcile_mask(keep, scores, 6)
    assert filled.tolist() == [[True, True, True, False], [False, True, True, True]]
    assert torch.equal(reconcile_mask(keep, scores, 4), keep)  # N* equal to N: the released mask


def test_reconcile_breaks_ties_towards_the_lower_index() -> None:
    scores = torch.zeros(2, 3)
    keep = torch.tensor([[False, True, False], [True, False, True]])
    assert reconcile_mask(keep, scores, 2).tolist() == [[False, True, False], [True, False, False]]
    assert reconcile_mask(keep, scores, 4).tolist() == [[True, True, False], [True, False, True]]
    with pytest.raises(ValueError):
        reconcile_mask(keep, scores, 7)


@pytest.mark.parametrize("seed", range(12))
def test_exact_selection_keeps_the_released_tokens_it_can(seed: int) -> None:
    """Every kept token of the released selection survives a shortfall; a surplus keeps a subset."""
    rng = random.Random(seed)
    frames = rng.choice([4, 7, 12, 20, 32])  # at least frames_needed(628) = 4: the floor's job
    groups, start = [], 0
    while start < frames:
        end = min(frames - 1, start + rng.randint(0, 5))
        groups.append((start, end))
        start = end + 1
    gen = torch.Generator().manual_seed(seed)
    features, scores = torch.randn(frames, P, 4, generator=gen), torch.rand(frames, P, generator=gen)
    kinds = torch.tensor(frame_kinds(groups, frames))
    released = selection_mask(scores, kinds, token_budget(P, frames, retention=0.1, base_frames=32))
    count = exact_count(P, 32, retention=0.1)
    exact = select_tokens(features, scores, groups, retention=0.1, base_frames=32, count=count)
    assert exact.tokens.shape == (count, 4)
    order = exact.frame_ids * P + exact.positions
    assert torch.equal(order, order.sort().values)  # row-major: the group order is kept
    chosen = torch.zeros(frames, P, dtype=torch.bool)
    chosen[exact.frame_ids, exact.positions] = True
    if count >= int(released.sum()):
        assert bool((chosen | ~released).all())
    else:
        assert bool((~chosen | released).all())


def test_planner_never_merges_below_the_frames_n_needs() -> None:
    planner = MergePlanner(
        tau=0.3, ema=0.9, max_window=6, drop_last_middle=True, retention=0.25, budget="exact"
    )
    hidden = torch.randn(12, 9, 4, generator=torch.Generator().manual_seed(3)).cumsum(0)  # a drifting scene
    free = planner.merge(hidden, stage=0)
    merged = free.hidden.shape[0]
    assert merged < 12
    assert planner.merge(hidden, stage=0, min_frames=merged).hidden.shape[0] == merged
    held = planner.merge(hidden, stage=0, min_frames=merged + 1)
    assert torch.equal(held.hidden, hidden) and len(held.plan) == 12
    assert held.decisions == free.decisions  # the comparisons were made; the merge was not applied
    assert planner.min_frames(base_frames=32, tokens_per_frame=P) == 8  # ceil(1568 / 196)
    faithful = MergePlanner(tau=0.3, ema=0.9, max_window=6, drop_last_middle=True, retention=0.25)
    assert faithful.min_frames(base_frames=32, tokens_per_frame=P) == 1


def test_selection_inputs_size_the_exact_count() -> None:
    planner = MergePlanner(
        tau=0.3, ema=0.9, max_window=6, drop_last_middle=True, retention=0.1, budget="exact"
    )
    hidden = torch.randn(11, 9, 4, generator=torch.Generator().manual_seed(0))
    inputs = planner.selection_inputs(hidden, base_frames=32, tokens_per_frame=P)
    assert inputs.token_slots.shape == (628,)


def test_budget_is_a_validated_config_field() -> None:
    assert EarlyTomConfig().budget == "faithful"
    config = preset("videomme", 0.1, budget="exact")
    assert EarlyTomConfig.from_dict(config.to_dict()) == config
    assert config.config_hash() != EarlyTomConfig().config_hash()
    with pytest.raises(ConfigError, match="budget='exactly' is unknown"):
        preset("videomme", 0.1, budget="exactly")

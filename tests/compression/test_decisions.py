"""Stage I decision records, margins and the tie band (DESIGN §7)."""

from __future__ import annotations

import random

import pytest
import reference_loops as ref
import torch
from test_merge import CASES, scene_video

from earlytom.compression import (
    MERGE_NEIGHBOUR,
    MERGE_THRESHOLD,
    SEGMENT_CLOSE,
    TIE_BANDS,
    Decision,
    MergePlanner,
    SimilarityBand,
    apply_plan,
    changed_count,
    merge_frames,
    noise_bound_for,
    plan_merge_with_decisions,
    segment_frames,
    segment_with_decisions,
    segmentation_from_similarity,
    tie_band_for,
)


def settings(seed: int) -> dict:
    rng = random.Random(1000 + seed)
    return {
        "tau": rng.uniform(0.0, 0.9),
        "ema": rng.choice([0.9, 0.7, 1.0]),
        "max_window": rng.choice([3, 4, 6, 8]),
        "drop_last_middle": rng.random() < 0.5,
    }


def run(sim, num_frames: int, *, tie_band: float, stage: int = 0, **kw):
    """Segments, plan and decisions of the project's planner on a similarity callable."""
    drop = kw.pop("drop_last_middle", True)
    seg = segmentation_from_similarity(sim, num_frames, tie_band=tie_band, stage=stage, **kw)
    plan, merges = plan_merge_with_decisions(
        sim, seg.segments, drop_last_middle=drop, tie_band=tie_band, stage=stage
    )
    return seg.segments, plan, seg.decisions + merges


@pytest.mark.parametrize(("seed", "frames"), CASES[::3])
def test_margins_equal_loop_reference(seed: int, frames: int) -> None:
    hidden = scene_video(seed, frames)
    kw = settings(seed)
    log: list = []
    ref.merge(hidden, None, kw["tau"], kw["ema"], kw["max_window"], kw["drop_last_middle"], log)
    got = merge_frames(hidden, **kw).decisions
    assert [(d.kind, d.frames) for d in got] == [(kind, frames) for kind, frames, _, _ in log]
    for d, (kind, _, lhs, rhs) in zip(got, log, strict=True):
        want = rhs - lhs if kind == SEGMENT_CLOSE else lhs - rhs
        assert d.lhs == pytest.approx(lhs, abs=1e-5) and d.rhs == pytest.approx(rhs, abs=1e-5)
        assert d.margin == pytest.approx(want, abs=1e-5)
        assert d.outcome == d.released == (lhs < rhs if kind == SEGMENT_CLOSE else lhs > rhs)
        assert not d.in_band or d.margin == 0.0  # tie_band = 0: only exact ties are in the band


@pytest.mark.parametrize(("seed", "frames"), CASES)
def test_zero_band_is_bitwise_the_released_rule(seed: int, frames: int) -> None:
    hidden = scene_video(seed, frames)
    kw = settings(seed)
    band = SimilarityBand(hidden, max_offset=kw["max_window"] - 1)
    want_segments, want_plan = ref.released_plan(
        band, frames, kw["tau"], kw["ema"], kw["max_window"], kw["drop_last_middle"]
    )
    got = merge_frames(hidden, **kw)
    assert got.segments == want_segments == segment_frames(hidden, **_seg(kw))
    assert [(b.first, b.second, b.weight) for b in got.plan] == want_plan  # weights compared exactly
    assert torch.equal(got.hidden, apply_plan(hidden, got.plan))
    assert changed_count(got.decisions) == 0


def _seg(kw: dict) -> dict:
    return {k: kw[k] for k in ("tau", "ema", "max_window")}


def noisy_tie_sim(seed: int, base: float = 0.97, noise: float = 1e-6):
    """Similarities of a frozen run (every pair exactly `base`), perturbed by uniform ±noise."""
    rng = random.Random(seed)
    table: dict[tuple[int, int], float] = {}

    def sim(a: int, b: int) -> float:
        if a == b:
            return 1.0
        key = (min(a, b), max(a, b))
        if key not in table:
            table[key] = base + rng.uniform(-noise, noise)
        return table[key]

    return sim


def test_perturbed_exact_tie_flips_without_band_not_with_it() -> None:
    """A frozen stretch: every comparison is an exact tie up to ±1e-6. Without the band the merge
    plan depends on the noise; with the fp32 band every perturbation gives the exact-tie plan."""
    kw = {"tau": 0.3, "ema": 0.9, "max_window": 6}
    exact = run(noisy_tie_sim(0, noise=0.0), 20, tie_band=0.0, **kw)[1]
    released, banded = set(), set()
    for seed in range(40):
        released.add(run(noisy_tie_sim(seed), 20, tie_band=0.0, **kw)[1])
        _, plan, decisions = run(noisy_tie_sim(seed), 20, tie_band=tie_band_for(torch.float32), **kw)
        banded.add(plan)
        assert all(d.in_band for d in decisions if d.kind != SEGMENT_CLOSE)
    assert len(released) > 1  # the noise decides merges
    assert banded == {exact}  # the band resolves every one as the exact tie


def test_duplicate_frames_tie_in_hidden_states() -> None:
    """Frozen tail of one frame written 12 times, each copy perturbed like another backend would."""
    gen = torch.Generator().manual_seed(0)
    moving = torch.randn(6, 49, 16, generator=gen).cumsum(0)  # (6, S, D) a drifting shot
    tail = moving[-1:].repeat(12, 1, 1)  # (12, S, D) the frozen tail
    hidden = torch.cat([moving, tail])
    plans_released, plans_banded, changed = set(), set(), 0
    for seed in range(12):
        noise = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(seed))
        perturbed = hidden + 1e-3 * hidden.abs().mean() * noise  # similarity shifts of ~1e-6
        plans_released.add(merge_frames(perturbed, tau=0.3).plan)
        banded = merge_frames(perturbed, tau=0.3, tie_band=TIE_BANDS["float32"])
        plans_banded.add(banded.plan)
        changed += changed_count(banded.decisions)
    assert len(plans_released) > 1 and len(plans_banded) == 1 and changed > 0
    exact = merge_frames(hidden, tau=0.3)
    assert plans_banded == {exact.plan}  # bitwise duplicates: ties resolve the same without a band


def random_sim(seed: int, num_frames: int):
    """A random symmetric similarity matrix, quantised so that near ties are common."""
    rng = random.Random(seed)
    step = rng.choice([0.1, 0.05, 0.02])
    values = {
        (a, b): round(rng.uniform(0.5, 1.0) / step) * step + rng.uniform(-1e-6, 1e-6)
        for a in range(num_frames)
        for b in range(a + 1, num_frames)
    }
    return lambda a, b: 1.0 if a == b else values[(min(a, b), max(a, b))]


def band_case(seed: int):
    """A random similarity, setting and band; τ on a quantisation level with ema = 1 makes ŝ tie
    with τ, a low τ gives long segments to merge."""
    rng = random.Random(seed)
    frames = rng.choice([3, 5, 8, 12, 20, 32])
    tau = rng.choice([0.7, 0.8, 0.9]) if rng.random() < 0.3 else rng.uniform(0.0, 0.6)
    kw = {"tau": tau, "ema": rng.choice([0.9, 1.0]), "max_window": rng.choice([3, 6, 8])}
    return random_sim(seed, frames), frames, kw, rng.choice([1e-6, 1e-5, 1e-3, 1e-2])


@pytest.mark.parametrize("seed", range(200))
def test_band_never_changes_a_decision_outside_it(seed: int) -> None:
    sim, frames, kw, tie_band = band_case(seed)
    released = run(sim, frames, tie_band=0.0, **kw)
    banded = run(sim, frames, tie_band=tie_band, **kw)
    for d in banded[2]:
        assert d.in_band == (abs(d.margin) <= tie_band)
        if not d.in_band:
            assert d.outcome == d.released  # outside the band: the released comparison
        else:
            assert d.outcome is False  # inside: an exact tie, no close and no merge
    # Both runs make the same decisions up to the first one the band changed, then may part.
    first = next((k for k, d in enumerate(banded[2]) if d.changed), None)
    head = slice(0, first)
    assert [_key(d) for d in banded[2][head]] == [_key(d) for d in released[2][head]]
    if first is None:
        assert banded[:2] == released[:2] and changed_count(banded[2]) == 0


def test_band_cases_exercise_changes() -> None:
    """The random cases above must actually put decisions in the band and change outputs."""
    changed = parted = 0
    for seed in range(200):
        sim, frames, kw, tie_band = band_case(seed)
        banded = run(sim, frames, tie_band=tie_band, **kw)
        changed += changed_count(banded[2]) > 0
        parted += banded[:2] != run(sim, frames, tie_band=0.0, **kw)[:2]
    assert changed > 15 and parted > 10


def _key(d: Decision) -> tuple:
    return (d.kind, d.frames, d.lhs, d.rhs, d.released)


def test_decisions_in_order_with_stage() -> None:
    hidden = scene_video(11, 32)
    scores = torch.rand(32, hidden.shape[1])
    planner = MergePlanner(tau=0.3, ema=0.9, max_window=6, drop_last_middle=True, retention=0.1)
    merged = planner.merge(hidden, scores, stage=2)
    assert merged.decisions and {d.stage for d in merged.decisions} == {2}
    kinds = [d.kind for d in merged.decisions]
    closes = kinds.count(SEGMENT_CLOSE)
    assert kinds[:closes] == [SEGMENT_CLOSE] * closes  # segmentation first, then merges
    assert set(kinds[closes:]) <= {MERGE_THRESHOLD, MERGE_NEIGHBOUR}
    assert [d.frames[1] for d in merged.decisions[:closes]] == sorted(
        d.frames[1] for d in merged.decisions[:closes]
    )
    pairs = [d.frames[0] for d in merged.decisions[closes:]]
    assert pairs == sorted(pairs)  # the walk goes forward through time
    seg = segment_with_decisions(hidden, tau=0.3, stage=2)
    assert merged.decisions[:closes] == seg.decisions
    selection = planner.selection_inputs(merged.hidden, base_frames=32, tokens_per_frame=196, stage=3)
    assert selection.decisions and {d.stage for d in selection.decisions} == {3}
    assert all(d.kind == SEGMENT_CLOSE for d in selection.decisions)
    assert selection.groups == segment_frames(merged.hidden, tau=0.3)


def test_planner_band_matches_functions() -> None:
    hidden = scene_video(4, 24)
    band = TIE_BANDS["float16"]
    planner = MergePlanner(
        tau=0.4, ema=0.9, max_window=6, drop_last_middle=False, retention=0.1, tie_band=band
    )
    merged = planner.merge(hidden)
    direct = merge_frames(hidden, tau=0.4, drop_last_middle=False, tie_band=band)
    assert merged.plan == direct.plan and merged.decisions == direct.decisions


def test_window_cap_is_not_recorded() -> None:
    same = torch.randn(1, 10, 8).repeat(12, 1, 1)  # (12, S, D): only the cap closes segments
    seg = segment_with_decisions(same, tau=0.3, max_window=4)
    assert seg.segments == [(0, 2), (3, 5), (6, 8), (9, 11)]
    assert [d.frames for d in seg.decisions] == [
        (0, 1),
        (0, 2),
        (3, 4),
        (3, 5),
        (6, 7),
        (6, 8),
        (9, 10),
        (9, 11),
    ]
    assert not any(d.outcome for d in seg.decisions)


def test_tie_band_for_dtypes() -> None:
    assert (
        tie_band_for(torch.float32) == tie_band_for("float32") == tie_band_for("fp32") == TIE_BANDS["float32"]
    )
    assert tie_band_for(torch.float16) == TIE_BANDS["float16"] > 0
    assert tie_band_for(torch.bfloat16) == TIE_BANDS["bfloat16"] > 0
    # The band covers the exact ties' scatter; the noise bound (validation's near-tie) is wider.
    assert noise_bound_for(torch.float16) > noise_bound_for(torch.float32) >= tie_band_for(torch.float32)
    assert noise_bound_for(torch.bfloat16) >= noise_bound_for(torch.float16) >= tie_band_for(torch.float16)
    assert tie_band_for(torch.float64) == TIE_BANDS["float32"]  # similarities are fp32 anyway
    with pytest.raises(ValueError, match="no tie band"):
        tie_band_for(torch.int8)
    with pytest.raises(ValueError, match="tie_band"):
        merge_frames(torch.randn(3, 4, 4), tau=0.3, tie_band=-1e-6)


def test_decision_margin_sign() -> None:
    from earlytom.compression.decisions import decide

    close = decide(SEGMENT_CLOSE, (0, 1), 0.29, 0.3, tie_band=0.0)
    assert close.margin == pytest.approx(0.01) and close.outcome and close.released
    assert not decide(SEGMENT_CLOSE, (0, 1), 0.3, 0.3, tie_band=0.0).outcome  # exact tie: no close
    near = decide(MERGE_THRESHOLD, (1, 2, 0, 5), 0.5 + 1e-7, 0.5, tie_band=1e-6)
    assert near.in_band and near.released and not near.outcome and near.changed
    far = decide(MERGE_NEIGHBOUR, (1, 2, 3), 0.4, 0.5, tie_band=1e-6)
    assert far.margin == pytest.approx(-0.1) and not far.in_band and not far.outcome

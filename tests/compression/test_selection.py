"""Stage II: decoupled spatial selection, against the token-by-token reference."""

from __future__ import annotations

import math
import random

import pytest
import reference_loops as ref
import torch

from earlytom.compression import (
    DYNAMIC,
    STATIC,
    frame_kinds,
    select_tokens,
    static_windows,
    token_budget,
)

P = 196


def random_groups(rng: random.Random, frames: int) -> list[tuple[int, int]]:
    groups, start = [], 0
    while start < frames:
        end = min(frames - 1, start + rng.randint(0, 5))
        groups.append((start, end))
        start = end + 1
    return groups


@pytest.mark.parametrize("seed", range(30))
def test_select_equals_reference(seed: int) -> None:
    rng = random.Random(seed)
    frames = rng.choice([1, 2, 3, 7, 14, 23, 32])
    retention = rng.choice([0.1, 0.15, 0.2, 0.25, 0.5, 1.0])
    groups = random_groups(rng, frames)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(frames, P, 6, generator=gen)
    # Quantised scores create ties, which must go to the lower index everywhere.
    scores = torch.randint(0, 20, (frames, P), generator=gen).float() / 20
    got = select_tokens(features, scores, groups, retention=retention, base_frames=32)
    want = ref.select(features, scores, groups, retention, 32)
    assert list(zip(got.frame_ids.tolist(), got.positions.tolist(), strict=True)) == want
    torch.testing.assert_close(got.tokens, features[got.frame_ids, got.positions])
    assert got.frame_ids.dtype == got.positions.dtype == torch.int64


@pytest.mark.parametrize("frames", range(1, 65))
@pytest.mark.parametrize("retention", [0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0])
def test_token_count_formula(frames: int, retention: float) -> None:
    """N = Σ over frames of k_d (dynamic) or k_s (static), with r̂ = min(r·B/T', 1)."""
    rng = random.Random(frames * 100 + int(retention * 100))
    groups = random_groups(rng, frames)
    kinds = frame_kinds(groups, frames)
    r_hat = min(retention * 32 / frames, 1.0)
    k_d, k_s = math.ceil(P * r_hat), max(1, round(P * r_hat))
    expected = sum(k_d if kind == DYNAMIC else k_s for kind in kinds)
    got = select_tokens(
        torch.zeros(frames, P, 2), torch.rand(frames, P), groups, retention=retention, base_frames=32
    )
    assert got.tokens.shape[0] == expected
    assert token_budget(P, frames, retention=retention, base_frames=32).dynamic == k_d


def test_paper_budget_at_ten_percent() -> None:
    """32 frames, no merge, r = 0.1: 20 tokens per dynamic frame (ceil 19.6), 627 ≈ the paper's count."""
    assert token_budget(P, 32, retention=0.1, base_frames=32).dynamic == 20
    # Fewer frames after Stage I raise the per-frame budget so the total stays near r·B·P = 627.
    assert token_budget(P, 16, retention=0.1, base_frames=32).dynamic == math.ceil(39.2)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 19, 20, 39, 98, 195, 196])
def test_static_windows_cover_all_positions(count: int) -> None:
    windows = static_windows(P, count)
    assert len(windows) == count
    covered = [j for start, stop in windows for j in range(start, stop)]
    assert covered == list(range(P))
    sizes = [stop - start for start, stop in windows]
    assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1
    assert sizes.count(P // count + 1) == P % count


def test_static_frame_takes_window_argmax() -> None:
    scores = torch.zeros(3, P)
    scores[1, 5] = 1.0  # inside the first window of the static middle frame
    scores[1, 150] = 2.0
    got = select_tokens(torch.randn(3, P, 4), scores, [(0, 2)], retention=0.01, base_frames=3)
    middle = got.positions[got.frame_ids == 1].tolist()
    k_s = token_budget(P, 3, retention=0.01, base_frames=3).static
    assert len(middle) == k_s == 2  # windows [0, 98) and [98, 196)
    assert middle == [5, 150]


def test_group_kinds_and_order() -> None:
    assert frame_kinds([(0, 0), (1, 2), (3, 6)], 7) == [
        DYNAMIC,
        DYNAMIC,
        DYNAMIC,
        DYNAMIC,
        STATIC,
        STATIC,
        DYNAMIC,
    ]
    got = select_tokens(
        torch.randn(7, P, 4), torch.rand(7, P), [(0, 0), (1, 2), (3, 6)], retention=0.1, base_frames=7
    )
    frame_ids = got.frame_ids.tolist()
    assert frame_ids == sorted(frame_ids)  # head, statics, tail: time order
    for frame in range(7):
        positions = got.positions[got.frame_ids == frame].tolist()
        assert positions == sorted(positions)  # raster order inside a frame


def test_full_retention_keeps_everything_for_dynamic_frames() -> None:
    features = torch.randn(2, P, 3)
    got = select_tokens(features, torch.rand(2, P), [(0, 1)], retention=1.0, base_frames=2)
    torch.testing.assert_close(got.tokens, features.reshape(-1, 3))


def test_groups_must_tile_frames() -> None:
    with pytest.raises(ValueError, match="tile"):
        frame_kinds([(0, 1), (3, 4)], 5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype: torch.dtype) -> None:
    features, scores = torch.randn(5, P, 8), torch.rand(5, P)
    want = select_tokens(features, scores, [(0, 4)], retention=0.2, base_frames=5)
    got = select_tokens(features.to(dtype), scores, [(0, 4)], retention=0.2, base_frames=5)
    assert got.tokens.dtype == dtype
    assert torch.equal(got.positions, want.positions)

"""Stage I: segmentation and frame merging against the literal loop reference of DESIGN §3."""

from __future__ import annotations

import random

import pytest
import reference_loops as ref
import torch

from earlytom.compression import SimilarityBand, frame_similarity, merge_frames, segment_frames


def scene_video(seed: int, frames: int, tokens: int = 12, width: int = 8) -> torch.Tensor:
    """Frames drifting around a few scenes, with hard cuts: similarities span the whole range."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    scene = torch.randn(tokens, width, generator=gen)
    out = []
    for _ in range(frames):
        if rng.random() < 0.15:
            scene = torch.randn(tokens, width, generator=gen)  # scene cut
        scene = scene + rng.uniform(0.0, 0.8) * torch.randn(tokens, width, generator=gen)
        out.append(scene.clone())
    return torch.stack(out)  # (T, S, D)


CASES = [(seed, frames) for seed in range(40) for frames in (1, 2, 3, 5, 8, 17, 32)]


@pytest.mark.parametrize(("seed", "frames"), CASES)
def test_merge_equals_loop_reference(seed: int, frames: int) -> None:
    rng = random.Random(1000 + seed)
    hidden = scene_video(seed, frames)
    scores = torch.rand(frames, hidden.shape[1], generator=torch.Generator().manual_seed(seed))
    tau, ema, window = rng.uniform(0.0, 0.9), rng.choice([0.9, 0.7, 1.0]), rng.choice([3, 4, 6, 8])
    drop = rng.random() < 0.5
    got = merge_frames(hidden, scores, tau=tau, ema=ema, max_window=window, drop_last_middle=drop)
    want_hidden, want_scores = ref.merge(hidden, scores, tau, ema, window, drop)
    assert got.segments == ref.segments(hidden, tau, ema, window)
    assert got.hidden.shape == want_hidden.shape
    torch.testing.assert_close(got.hidden.double(), want_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.scores.double(), want_scores, atol=1e-6, rtol=1e-5)


def test_reference_cases_exercise_every_branch() -> None:
    """The random cases above must actually hit merges, non-merges and the dropped frame."""
    weighted = unit_merge = dropped = 0
    for seed, frames in CASES:
        hidden = scene_video(seed, frames)
        result = merge_frames(hidden, tau=0.3)
        weighted += sum(b.first != b.second and b.weight < 1 for b in result.plan)
        unit_merge += sum(b.first != b.second and b.weight == 1 for b in result.plan)
        dropped += sum(len(range(s, e + 1)) for s, e in result.segments) - len(result.plan)
    assert weighted > 10 and unit_merge > 10 and dropped > 10


def test_scene_cut_starts_new_segment() -> None:
    a = torch.randn(1, 20, 16).repeat(3, 1, 1)
    b = torch.randn(1, 20, 16).repeat(3, 1, 1)
    assert segment_frames(torch.cat([a, b]), tau=0.5) == [(0, 2), (3, 5)]


def test_max_window_caps_segments() -> None:
    same = torch.randn(1, 10, 8).repeat(20, 1, 1)
    for window in (2, 3, 6):
        segs = segment_frames(same, tau=0.0, max_window=window)
        # Released rule: close before i when i - start + 1 >= max_window -> at most max_window-1 frames.
        assert max(e - s + 1 for s, e in segs) == window - 1
        assert segs[0] == (0, window - 2)
        assert [f for s, e in segs for f in range(s, e + 1)] == list(range(20))


def test_identical_middle_frames_merge_into_one() -> None:
    """Two identical middles more alike than their right neighbour pair merge into that very frame.

    (Runs of identical frames do not merge pairwise: the rule is s_i > s_{i+1}, strict, as released.)
    """
    torch.manual_seed(0)
    base = torch.randn(12, 8)
    middle = base + 0.3 * torch.randn(12, 8)
    other = middle + 0.5 * torch.randn(12, 8)
    frames = torch.stack([base, middle, middle, other, base + 0.6 * torch.randn(12, 8)])
    result = merge_frames(frames, tau=0.0)
    assert result.segments == [(0, 4)]
    assert [(b.first, b.second) for b in result.plan] == [
        (0, 0),
        (1, 2),
        (4, 4),
    ]  # `other` is the quirk's drop
    torch.testing.assert_close(result.hidden[1], middle)
    fixed = merge_frames(frames, tau=0.0, drop_last_middle=False)
    assert [(b.first, b.second) for b in fixed.plan] == [(0, 0), (1, 2), (3, 3), (4, 4)]


def test_identical_video_shrinks() -> None:
    """A still video: windows of max_window-1 = 5 frames; each loses its last middle frame (quirk)."""
    still = torch.randn(1, 10, 8).repeat(32, 1, 1)
    result = merge_frames(still, tau=0.3)
    assert all(e - s + 1 <= 5 for s, e in result.segments)
    assert result.hidden.shape[0] == 6 * 4 + 2  # six 5-frame windows keep 4 each, then (30, 31)
    torch.testing.assert_close(result.hidden, still[: result.hidden.shape[0]])


def test_quirk_on_a_constructed_no_merge_segment() -> None:
    """Middles less alike than the ends: nothing merges; the quirk drops G2, the fix keeps it."""
    torch.manual_seed(2)
    end = torch.randn(12, 8)
    middles = [torch.randn(12, 8) for _ in range(3)]  # unrelated to each other and to the ends
    hidden = torch.stack([end, *middles, end + 0.01 * torch.randn(12, 8)])  # τ_m ≈ 1
    quirk = merge_frames(hidden, tau=-1.0)
    fixed = merge_frames(hidden, tau=-1.0, drop_last_middle=False)
    assert [b.first for b in quirk.plan] == [0, 1, 2, 4]
    assert [b.first for b in fixed.plan] == [0, 1, 2, 3, 4]
    torch.testing.assert_close(fixed.hidden, hidden)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype(dtype: torch.dtype) -> None:
    hidden = scene_video(3, 16)
    scores = torch.rand(16, hidden.shape[1])
    low = merge_frames(hidden.to(dtype), scores, tau=0.3)
    full = merge_frames(hidden, scores, tau=0.3)
    assert low.hidden.dtype == dtype and low.scores.dtype == scores.dtype
    assert low.segments == full.segments


def test_single_and_two_frames() -> None:
    one = torch.randn(1, 5, 4)
    assert segment_frames(one, tau=0.9) == [(0, 0)]
    torch.testing.assert_close(merge_frames(one, tau=0.9).hidden, one)
    two = torch.randn(2, 5, 4)
    torch.testing.assert_close(merge_frames(two, tau=0.9).hidden, two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    hidden = scene_video(5, 32)
    cpu = merge_frames(hidden, tau=0.3)
    gpu = merge_frames(hidden.cuda(), tau=0.3)
    assert gpu.segments == cpu.segments and gpu.plan == cpu.plan
    torch.testing.assert_close(gpu.hidden.cpu(), cpu.hidden)


def test_similarity_band_equals_pairwise_definition() -> None:
    hidden = scene_video(7, 9)
    band = SimilarityBand(hidden, max_offset=5)
    for a in range(9):
        for b in range(a, min(9, a + 6)):
            assert band(a, b) == pytest.approx(frame_similarity(hidden[a], hidden[b]), abs=1e-6)
            assert band(a, b) == pytest.approx(ref.sim(hidden[a], hidden[b]), abs=1e-6)
    with pytest.raises(IndexError):
        band(0, 8)

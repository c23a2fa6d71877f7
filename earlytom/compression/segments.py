"""Streaming temporal segmentation of a frame batch (DESIGN §3, Stage I step 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from earlytom.compression.similarity import SimilarityBand

Segment = tuple[int, int]  # inclusive [start, end]


def segment_frames(
    hidden: torch.Tensor, *, tau: float, ema: float = 0.9, max_window: int = 6
) -> list[Segment]:
    """Split T frames (T, S, D) into contiguous segments of similar frames.

    Anchor = first frame of the current segment; smoothed score ŝ starts at 1. For each next frame
    i: ŝ ← ema·sim(anchor, i) + (1 - ema)·ŝ; the segment closes before i when ŝ < tau or when
    i - start + 1 >= max_window (so a segment holds at most max_window - 1 frames, as released).
    """
    if hidden.shape[0] < 1:
        raise ValueError("segment_frames needs at least one frame")
    band = SimilarityBand(hidden, max_offset=max_window - 1)
    return segments_from_similarity(band, hidden.shape[0], tau=tau, ema=ema, max_window=max_window)


def segments_from_similarity(
    sim: Callable[[int, int], float], num_frames: int, *, tau: float, ema: float, max_window: int
) -> list[Segment]:
    segments: list[Segment] = []
    start, smoothed = 0, 1.0
    for i in range(1, num_frames):
        smoothed = ema * sim(start, i) + (1.0 - ema) * smoothed
        if smoothed < tau or i - start + 1 >= max_window:
            segments.append((start, i - 1))
            start, smoothed = i, 1.0
    segments.append((start, num_frames - 1))
    return segments

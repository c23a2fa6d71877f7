"""Streaming temporal segmentation of a frame batch (DESIGN §3, Stage I step 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from earlytom.compression.decisions import SEGMENT_CLOSE, Decision, check_tie_band, decide
from earlytom.compression.similarity import SimilarityBand

Segment = tuple[int, int]  # inclusive [start, end]


@dataclass(frozen=True)
class Segmentation:
    segments: list[Segment]
    decisions: tuple[Decision, ...]  # one "segment_close" per frame not closed by the window cap


def segment_frames(
    hidden: torch.Tensor, *, tau: float, ema: float = 0.9, max_window: int = 6, tie_band: float = 0.0
) -> list[Segment]:
    """Split T frames (T, S, D) into contiguous segments of similar frames.

    Anchor = first frame of the current segment; smoothed score ŝ starts at 1. For each next frame
    i: ŝ ← ema·sim(anchor, i) + (1 - ema)·ŝ; the segment closes before i when ŝ < tau or when
    i - start + 1 >= max_window (so a segment holds at most max_window - 1 frames, as released).
    A close with |tau - ŝ| <= tie_band is not made (resolved like an exact tie).
    """
    return segment_with_decisions(hidden, tau=tau, ema=ema, max_window=max_window, tie_band=tie_band).segments


def segment_with_decisions(
    hidden: torch.Tensor,
    *,
    tau: float,
    ema: float = 0.9,
    max_window: int = 6,
    tie_band: float = 0.0,
    stage: int = 0,
) -> Segmentation:
    """`segment_frames`, plus the recorded close decisions (each with its margin)."""
    if hidden.shape[0] < 1:
        raise ValueError("segment_frames needs at least one frame")
    band = SimilarityBand(hidden, max_offset=max_window - 1)
    return segmentation_from_similarity(
        band, hidden.shape[0], tau=tau, ema=ema, max_window=max_window, tie_band=tie_band, stage=stage
    )


def segments_from_similarity(
    sim: Callable[[int, int], float],
    num_frames: int,
    *,
    tau: float,
    ema: float,
    max_window: int,
    tie_band: float = 0.0,
) -> list[Segment]:
    return segmentation_from_similarity(
        sim, num_frames, tau=tau, ema=ema, max_window=max_window, tie_band=tie_band
    ).segments


def segmentation_from_similarity(
    sim: Callable[[int, int], float],
    num_frames: int,
    *,
    tau: float,
    ema: float,
    max_window: int,
    tie_band: float = 0.0,
    stage: int = 0,
) -> Segmentation:
    tie_band = check_tie_band(tie_band)
    segments: list[Segment] = []
    decisions: list[Decision] = []
    start, smoothed = 0, 1.0
    for i in range(1, num_frames):
        smoothed = ema * sim(start, i) + (1.0 - ema) * smoothed
        if i - start + 1 >= max_window:  # integer rule: closes whatever ŝ is, nothing to record
            close = True
        else:
            decision = decide(SEGMENT_CLOSE, (start, i), smoothed, tau, tie_band=tie_band, stage=stage)
            decisions.append(decision)
            close = decision.outcome
        if close:
            segments.append((start, i - 1))
            start, smoothed = i, 1.0
    segments.append((start, num_frames - 1))
    return Segmentation(segments, tuple(decisions))

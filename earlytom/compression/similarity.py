"""Frame-to-frame similarity: mean over token positions of same-position cosine (DESIGN §3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """sim(a, b) of two frames (S, D): mean over the S positions of the cosine, in fp32."""
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).mean())


class SimilarityBand:
    """sim(a, b) for every pair of frames at most `max_offset` apart, read on the host once.

    The planner only ever compares frames inside one window (anchor to frame, neighbours, segment
    ends), so a band of offsets 1..max_offset suffices: T·max_offset similarities instead of T²,
    with element-wise fp32 products (no GEMM, so TF32 settings cannot change a merge decision).
    """

    def __init__(self, hidden: torch.Tensor, max_offset: int) -> None:
        if hidden.dim() != 3:
            raise ValueError(f"hidden must be (T, S, D), got shape {tuple(hidden.shape)}")
        self.num_frames = hidden.shape[0]
        self.max_offset = max(0, min(max_offset, self.num_frames - 1))
        unit = F.normalize(hidden.float(), dim=-1, eps=1e-8)  # (T, S, D)
        rows = [(unit[:-d] * unit[d:]).sum(-1).mean(-1) for d in range(1, self.max_offset + 1)]
        flat = torch.cat(rows).tolist() if rows else []  # the one host sync of the planner
        self._rows: list[list[float]] = []
        offset = 0
        for d in range(1, self.max_offset + 1):
            self._rows.append(flat[offset : offset + self.num_frames - d])
            offset += self.num_frames - d

    def __call__(self, a: int, b: int) -> float:
        if a == b:
            return 1.0
        lo, hi = min(a, b), max(a, b)
        if hi - lo > self.max_offset:
            raise IndexError(f"frames {lo} and {hi} are further apart than the band ({self.max_offset})")
        return self._rows[hi - lo - 1][lo]

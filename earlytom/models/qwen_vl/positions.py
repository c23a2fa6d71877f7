"""Qwen2.5-VL's M-RoPE positions for a prompt whose video placeholders are the kept tokens.

Each token has three position ids (temporal, row, column). As Qwen2.5-VL computes them (Qwen's
reference implementation; HF's `Qwen2_5_VLModel.get_rope_index`):

* text tokens: the same id on all three axes, counting up by one;
* the video's tokens, with start = the position after the text before them: temporal =
  start + int(t · interval) for temporal patch t, where interval = tokens_per_second ·
  second_per_grid is computed in float32 and the product is truncated toward zero *after*
  multiplying by t (so fractional intervals accumulate: 1.5 gives 0, 1, 3, 4, 6...); row = start +
  r, column = start + c over the merged (gh/2, gw/2) grid;
* text after the video: from max(every position so far) + 1.

A compressed video keeps a subset of its tokens; each kept token keeps the coordinates of the
token it came from (`token_coords`: source temporal patch, row, column) and text after the
video continues from the kept tokens' maximum + 1.

Deviation from HF 5.24 (measured): its refactored `get_rope_index` advances the text after a
video by max(gh/2, gw/2) only, ignoring the temporal extent, while its `rope_deltas` (hence the
first generated token) still use max + 1. When t · interval exceeds the merged grid's side (long
videos: 16 temporal patches at interval 7.5 reach 112) its text after the video overlaps the
video's temporal ids. Transformers up to 5.2 and Qwen's reference use max + 1 throughout, as here;
where the spatial side dominates the two agree exactly.
"""

from __future__ import annotations

import torch


def time_interval(second_per_grid: float, tokens_per_second: int) -> float:
    """The temporal position step per temporal patch: tokens_per_second · second_per_grid, in
    float32 (HF multiplies the float32 `second_per_grid_ts` tensor by the int)."""
    spg = torch.tensor(second_per_grid, dtype=torch.float32)
    return float(spg * tokens_per_second)


def grid_coords(grid_t: int, rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    """(t·rows·cols, 3) int64 (temporal patch, row, column) of every token in raster order."""
    t, r, c = torch.meshgrid(
        torch.arange(grid_t, device=device),
        torch.arange(rows, device=device),
        torch.arange(cols, device=device),
        indexing="ij",
    )
    return torch.stack([t.flatten(), r.flatten(), c.flatten()], dim=-1)  # (N, 3)


def mrope_positions(
    input_ids: torch.Tensor, *, video_token_id: int, token_coords: torch.Tensor, time_interval: float
) -> tuple[torch.Tensor, int]:
    """(3, L) int64 position ids of one prompt, and the position of the first generated token.

    input_ids: (L,) with one contiguous run of N `video_token_id` placeholders (or none);
    token_coords: (N, 3) int64 (source temporal patch, row, column in the merged grid) of each
    placeholder in prompt order; time_interval: `time_interval(second_per_grid, tokens_per_second)`.
    """
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must have shape (L,), got {tuple(input_ids.shape)}")
    device, length = input_ids.device, input_ids.shape[0]
    where = (input_ids == video_token_id).nonzero().flatten()  # (N,)
    count = where.numel()
    if token_coords.dim() != 2 or token_coords.shape != (count, 3):
        raise ValueError(f"token_coords must have shape ({count}, 3) for {count} placeholders, "
                         f"got {tuple(token_coords.shape)}")  # fmt: skip
    positions = torch.arange(length, device=device).expand(3, length).clone()  # (3, L)
    if count == 0:
        return positions, length
    first, end = int(where[0]), int(where[-1]) + 1
    if end - first != count:
        raise ValueError("the video placeholders must form one contiguous run")
    coords = token_coords.to(device=device, dtype=torch.int64)
    if bool((coords < 0).any()):
        raise ValueError("token_coords must be non-negative")
    step = torch.tensor(time_interval, dtype=torch.float32, device=device)
    temporal = (coords[:, 0].to(torch.float32) * step).long()  # (N,) truncated after the product
    positions[0, first:end] = temporal + first
    positions[1:, first:end] = coords[:, 1:].T + first  # (2, N)
    after = int(positions[:, :end].max()) + 1
    positions[:, end:] = torch.arange(length - end, device=device) + after  # (3, L - end)
    return positions, int(positions.max()) + 1

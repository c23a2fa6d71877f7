"""Video preprocessing for Qwen2.5-VL in torch only: no torchvision, no HF video processor.

The reference is what Qwen's evaluation path runs: qwen-vl-utils' `fetch_video` (sampling, size,
resize) followed by the HF processor (`Qwen2VLVideoProcessor` + `Qwen2_5_VLProcessor`: rescale,
normalise, temporal padding, patch layout, `second_per_grid_ts`). The rules, as read there:

* Sampling (`frame_indices`): the frame count asked for is rounded to a multiple of 2 with
  Python's `round` (half to even: 5 -> 4, 7 -> 8, 1 -> 0), then `torch.linspace(0, total - 1, n)`
  rounded to the nearest index. A video with fewer frames than that is refused (qwen-vl-utils
  raises; it never repeats frames, unlike the LLaVA sampling of `earlytom.models.video`).
* Size (`frame_size`, qwen-vl-utils' `smart_resize`): each side rounded to the nearest multiple
  of 28 (at least 28); if the area exceeds `max_pixels` both sides are scaled by
  sqrt(H·W / max_pixels) and floored to multiples of 28, if it is below `min_pixels` they are
  scaled up by sqrt(min_pixels / (H·W)) and ceiled. Aspect ratios above 200 are refused. For
  videos the defaults are min_pixels = 128·28² = 100352 (`VIDEO_MIN_PIXELS`, not the image
  minimum 4·28² = 3136) and a per-frame maximum of min(max_pixels, 768·28²) that also shrinks to
  an even share of a 90 % × 128000-token budget when a video has more than ~900 frames.
* Resize: qwen-vl-utils calls torchvision's `functional.resize(uint8 video, bicubic,
  antialias=True)`, which is one 2-D `torch.nn.functional.interpolate` in float32, clamped to
  [0, 255] and rounded (half to even) back to uint8. `resample="torchvision"` (the default)
  computes exactly that with torch alone. `resample="pil"` is PIL's bicubic (two 1-D passes, uint8
  in between; `earlytom.models.preprocess`'s emulation), what HF's PIL image processor does: it
  differs from the reference by at most 1 level on smooth content (5-18 % of the values) and by up
  to ~24 levels (mean 0.1-0.3) on pixel noise, measured on 360p-1080p frames resized to 336×588.
* Pixels: / 255, then OpenAI CLIP mean/std per channel.
* Temporal patches: an odd frame count is padded by repeating the last frame (HF's `patchify`);
  `second_per_grid` = temporal_patch_size / fps of the sampled frames, where qwen-vl-utils
  measures that fps as nframes / total_frames · video_fps (`sampled_fps`).
* Layout: per temporal patch, the gh·gw patches of 3·2·14·14 = 1176 values (channel, frame,
  row, col) in the processor's order: consecutive groups of 4 are one 2×2 merge unit, the merge
  units in raster order over (gh/2, gw/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from earlytom.errors import InputError
from earlytom.models.preprocess import _resize_pass, _vertical_first, check_frames
from earlytom.models.qwen_vl.architecture import QWEN25_VL_7B_VISION, QWEN_MAX_PIXELS

PATCH = int(QWEN25_VL_7B_VISION["patch_size"])  # 14 px
MERGE = int(QWEN25_VL_7B_VISION["spatial_merge_size"])  # 2×2 patches per LLM token
TEMPORAL = int(QWEN25_VL_7B_VISION["temporal_patch_size"])  # 2 frames per temporal patch
FACTOR = PATCH * MERGE  # 28: frame sides are multiples of this
PATCH_DIM = 3 * TEMPORAL * PATCH * PATCH  # 1176 values per patch
# qwen-vl-utils' video limits (vision_process.py).
VIDEO_MIN_PIXELS = 128 * 28 * 28  # 100352
VIDEO_MAX_PIXELS = 768 * 28 * 28  # 602112: no frame is larger, whatever max_pixels says
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)  # a whole video's budget (its env default)
MAX_RATIO = 200
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Resample = Literal["torchvision", "pil"]


@dataclass(frozen=True, eq=False)
class QwenVideoInputs:
    """One preprocessed video: temporal patches in the HF processor's order."""

    patches: torch.Tensor  # (T', S, 1176), T' = grid[0], S = grid[1]·grid[2]
    grid: tuple[int, int, int]  # (t, gh, gw) in patches: HF's `video_grid_thw`
    frame_indices: tuple[int, ...]  # source frame of each of the 2·t frames (a pad repeats the last)
    second_per_grid: float  # seconds per temporal patch: HF's `second_per_grid_ts`

    @property
    def merged_grid(self) -> tuple[int, int, int]:
        """(t, gh/2, gw/2): the LLM token grid after the 2×2 patch merger."""
        t, gh, gw = self.grid
        return t, gh // MERGE, gw // MERGE

    @property
    def num_video_tokens(self) -> int:
        """t·gh·gw/4: the `<|video_pad|>` count of the uncompressed video."""
        t, rows, cols = self.merged_grid
        return t * rows * cols


def frame_indices(total: int, num_frames: int) -> list[int]:
    """The frames qwen-vl-utils samples when asked for `num_frames` of a `total`-frame video.

    n = round(num_frames / 2) · 2 (Python's round, half to even), then
    `torch.linspace(0, total - 1, n)` rounded to the nearest index. Like qwen-vl-utils, a video
    with fewer than n frames (or n < 2) is refused with InputError instead of repeating frames.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"the number of frames must be a positive integer, got {num_frames!r}: pass e.g. 32")
    n = round(num_frames / TEMPORAL) * TEMPORAL
    if n < TEMPORAL:
        raise InputError(f"frames={num_frames} rounds to {n} frames: Qwen2.5-VL samples at least {TEMPORAL}")
    if total < n:
        fewer = f"ask for at most {total - total % TEMPORAL}" if total >= TEMPORAL else "pass a longer video"
        raise InputError(
            f"the video has {total} frames, fewer than the {n} to sample: Qwen2.5-VL's sampling "
            f"(qwen-vl-utils) does not repeat frames, {fewer}"
        )
    return torch.linspace(0, total - 1, n).round().long().tolist()


def sampled_fps(total: int, num_frames: int, video_fps: float) -> float:
    """The frame rate of the sampled frames as qwen-vl-utils reports it: n / total · video fps."""
    return num_frames / max(total, 1e-6) * video_fps


def frame_size(
    height: int,
    width: int,
    *,
    max_pixels: int = QWEN_MAX_PIXELS,
    min_pixels: int = VIDEO_MIN_PIXELS,
    factor: int = FACTOR,
    num_frames: int | None = None,
) -> tuple[int, int]:
    """(height, width) every frame is resized to: qwen-vl-utils' `smart_resize` for videos.

    With `num_frames`, `max_pixels` is first bounded as `fetch_video` does: by VIDEO_MAX_PIXELS
    and by an even share of VIDEO_TOTAL_PIXELS per temporal patch, never below 1.05·min_pixels.
    Sides that would round or floor to 0 become `factor` (HF's variant of the rule does this on
    the floor path, qwen-vl-utils on the round path; elsewhere both agree with this one).
    """
    if min(height, width) < 1:
        raise InputError(f"a frame of {width}×{height} pixels has no area: pass a non-empty video")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise InputError(
            f"a {width}×{height} frame has an aspect ratio above {MAX_RATIO}, which Qwen2.5-VL refuses"
        )
    limit: float = max_pixels
    if num_frames is not None:
        share = VIDEO_TOTAL_PIXELS / num_frames * TEMPORAL
        limit = min(max_pixels, max(min(VIDEO_MAX_PIXELS, share), int(min_pixels * 1.05)))
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > limit:
        beta = math.sqrt(height * width / limit)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def resize_frames(
    x: torch.Tensor, height: int, width: int, resample: Resample = "torchvision"
) -> torch.Tensor:
    """(T, 3, H, W) float32 on uint8 levels -> (T, 3, height, width) float32 on uint8 levels.

    "torchvision": torchvision's tensor resize (one bicubic antialiased pass, clamp, round half to
    even), qwen-vl-utils' exact result. "pil": PIL's bicubic (two passes, uint8 in between).
    """
    if tuple(x.shape[-2:]) == (height, width):
        return x  # both references skip a resize to the same size
    if resample == "torchvision":
        x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        return x.clamp_(0.0, 255.0).round_()
    if resample == "pil":
        h, w = x.shape[-2:]
        vertical = _vertical_first(h, w, height, width)  # PIL's pass order
        x = _resize_pass(x, height, w) if vertical else _resize_pass(x, h, width)  # one side resized
        return _resize_pass(x, height, width)  # (T, 3, height, width)
    raise ValueError(f"resample must be 'torchvision' or 'pil', got {resample!r}")


def patchify(pixels: torch.Tensor) -> torch.Tensor:
    """(2·t, 3, h, w) normalised frames -> (t, gh·gw, 1176) patches in the HF processor's order.

    Each patch holds (channel, frame, row, col) values; patches come merge unit by merge unit
    (2×2 patches, raster inside a unit), the units in raster order over (gh/2, gw/2).
    """
    frames, channels, height, width = pixels.shape
    t, gh, gw = frames // TEMPORAL, height // PATCH, width // PATCH
    x = pixels.reshape(t, TEMPORAL, channels, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (t, gh/2, gw/2, 2, 2, C, 2, 14, 14)
    return x.reshape(t, gh * gw, channels * TEMPORAL * PATCH * PATCH)  # (T', S, 1176)


def preprocess_video(
    frames: torch.Tensor,
    *,
    fps: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    max_pixels: int = QWEN_MAX_PIXELS,
    min_pixels: int = VIDEO_MIN_PIXELS,
    indices: Sequence[int] | None = None,
    resample: Resample = "torchvision",
) -> QwenVideoInputs:
    """Turn sampled RGB frames into Qwen2.5-VL's video inputs.

    frames: (T, H, W, 3) uint8 RGB, already sampled (`frame_indices`); `fps`: their frame rate
    (`sampled_fps`); `indices`: their indices in the video (default 0..T-1), recorded only.
    Resized to `frame_size` on `device` (the frames' device when None), rescaled, normalised,
    padded to an even count, patchified; patches in `dtype`.
    """
    check_frames(frames)
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"the video's frame rate must be a positive number, got {fps!r}")
    count, height, width = frames.shape[:3]
    indices = tuple(range(count)) if indices is None else tuple(int(i) for i in indices)
    if len(indices) != count:
        raise ValueError(f"{len(indices)} frame indices for {count} frames")
    size = frame_size(height, width, max_pixels=max_pixels, min_pixels=min_pixels, num_frames=count)
    x = frames.to(device) if device is not None else frames  # move uint8: 4x fewer bytes
    x = x.permute(0, 3, 1, 2).to(torch.float32)  # (T, 3, H, W)
    x = resize_frames(x, *size, resample)  # (T, 3, h, w) on uint8 levels
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    x = (x * (1.0 / 255.0) - mean) / std  # (T, 3, h, w), a new tensor: x may alias frames
    if pad := -count % TEMPORAL:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])  # (2·t, 3, h, w)
        indices += indices[-1:] * pad
    patches = patchify(x).to(dtype).contiguous()  # (T', S, 1176)
    grid = (patches.shape[0], size[0] // PATCH, size[1] // PATCH)
    return QwenVideoInputs(patches, grid, indices, TEMPORAL / rate)


def hf_pixel_values(inputs: QwenVideoInputs) -> torch.Tensor:
    """(t·gh·gw, 1176): exactly HF's `pixel_values_videos` for this one video."""
    return inputs.patches.reshape(-1, PATCH_DIM)


def hf_video_grid_thw(inputs: QwenVideoInputs) -> torch.Tensor:
    """(1, 3) int64: HF's `video_grid_thw`, on the patches' device."""
    return torch.tensor([inputs.grid], dtype=torch.int64, device=inputs.patches.device)


def hf_video_kwargs(inputs: QwenVideoInputs) -> dict[str, torch.Tensor]:
    """`pixel_values_videos`, `video_grid_thw` and `second_per_grid_ts` (float32, as the processor
    returns them) for a Qwen2_5_VLForConditionalGeneration call."""
    spg = torch.tensor([inputs.second_per_grid], dtype=torch.float32, device=inputs.patches.device)
    return {
        "pixel_values_videos": hf_pixel_values(inputs),
        "video_grid_thw": hf_video_grid_thw(inputs),
        "second_per_grid_ts": spg,
    }

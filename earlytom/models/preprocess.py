"""Frame preprocessing for the LLaVA-OneVision (SigLIP) vision tower, in torch only.

The reference (the HF image processor) does, per frame, with PIL:
    Image.fromarray(frame).resize((384, 384), Image.BICUBIC) -> uint8 -> / 255 -> (x - 0.5) / 0.5
i.e. a bicubic resize to a square with no crop (the aspect ratio is not kept), then values in
[-1, 1]. Doing it in torch avoids torchvision and PIL round trips and runs on the GPU: only the
small uint8 frames cross to the device, the float work happens there.

Matching PIL to within one uint8 level needs two details beyond the kernel:
  * torch's antialiased bicubic uses PIL's kernel (a = -0.5, support widened by the scale when
    downsampling), for down- and upscaling alike;
  * PIL resizes in two 1-D passes and stores the intermediate image as uint8, so bicubic
    overshoot is rounded and clipped to [0, 255] between the passes. A single 2-D interpolate
    skips that clip and differs by up to ~25 levels on high-contrast content (noise, sharp
    edges). We therefore run the two passes separately, in PIL's order, with the same rounding.
PIL's pass order changed in Pillow 13 (python-pillow/Pillow#9549): horizontal first always
before, vertical first when the height shrinks more than twice as much as the width since. We
follow the installed Pillow so that the output matches the HF processor in the same environment.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

import torch
import torch.nn.functional as F

IMAGE_SIZE = 384
IMAGE_MEAN = 0.5
IMAGE_STD = 0.5


@cache
def _pillow_picks_pass_order() -> bool:
    """True when the installed Pillow (>= 13) may run the vertical pass first."""
    try:
        major = int(version("pillow").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return True  # no Pillow to match: use the current rule
    return major >= 13


def _vertical_first(height: int, width: int, out_h: int, out_w: int) -> bool:
    """PIL's choice of pass order (Resample.c, ImagingResampleInner)."""
    if not _pillow_picks_pass_order():
        return False
    shrink_h, shrink_w = height - out_h, width - out_w
    return shrink_h > 0 and shrink_h > 2 * shrink_w


def _to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """Round half up and clip to [0, 255] in place, like PIL's fixed-point clip8."""
    return x.add_(0.5).floor_().clamp_(0.0, 255.0)


def _resize_pass(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """One 1-D bicubic pass (only one of the two sizes differs), result on uint8 levels."""
    if x.shape[-2:] == (out_h, out_w):
        return x  # PIL skips a pass whose size does not change
    x = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
    return _to_uint8_levels(x)


def _resize_like_pil(x: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) float32 on uint8 levels -> (T, 3, size, size) float32 on uint8 levels.

    Two 1-D passes in PIL's order, each ending on uint8 levels like PIL's intermediate image.
    """
    height, width = x.shape[-2:]
    if _vertical_first(height, width, size, size):
        x = _resize_pass(x, size, width)  # (T, 3, size, W)
    else:
        x = _resize_pass(x, height, size)  # (T, 3, H, size)
    return _resize_pass(x, size, size)  # (T, 3, size, size)


def preprocess_frames(
    frames: torch.Tensor,
    *,
    size: int = IMAGE_SIZE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Turn RGB frames into the vision tower's `pixel_values`.

    frames: (T, H, W, 3) uint8 RGB. Returns (T, 3, size, size) of `dtype` on `device` (the frames'
    device when None), normalised with mean = std = 0.5 so values lie in [-1, 1].
    """
    check_frames(frames)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")

    # Move the uint8 tensor first: 4x fewer bytes than float32 over PCIe.
    x = frames.to(device) if device is not None else frames
    # float32 on every device: CUDA has no uint8 antialiased kernel, and torch's CPU uint8 one is
    # ~2x faster but further from PIL (its fixed-point weights are coarser), so one path for all.
    x = x.permute(0, 3, 1, 2).to(torch.float32)  # (T, 3, H, W)
    x = _resize_like_pil(x, size)  # (T, 3, size, size) on uint8 levels
    # x / 255 then (x - mean) / std, fused into one affine step (a new tensor: x may alias frames).
    x = x * (1.0 / (255.0 * IMAGE_STD)) - IMAGE_MEAN / IMAGE_STD
    return x.to(dtype).contiguous()


def check_frames(frames: torch.Tensor) -> None:
    """ValueError unless `frames` is a non-empty (T, H, W, 3) uint8 RGB tensor (every family's input)."""
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {tuple(frames.shape)}")
    if 0 in frames.shape:
        raise ValueError(f"frames must be non-empty, got shape {tuple(frames.shape)}")

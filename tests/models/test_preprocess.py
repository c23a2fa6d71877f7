"""Tests for earlytom.models.preprocess against the PIL reference of the HF image processor.

Parity is checked in uint8-level units before normalisation: our output is mapped back with
(x * 0.5 + 0.5) * 255 and compared with PIL's uint8 resize. The tolerance is 2 levels (= 2/255
in [0, 1] space, = 4/255 after normalisation); observed differences are at most 1 level except
for a handful of values at 2 on noise, and under 2% of values differ at all (PIL rounds
fixed-point 22-bit weights, torch accumulates float32: ties near .5 can fall either way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from earlytom.models.preprocess import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, preprocess_frames

JOBS = Path(__file__).resolve().parents[3] / "shared/data/jobs.mp4"
MAX_LEVELS = 2.0  # max abs difference to PIL, in uint8 levels
MEAN_LEVELS = 0.02  # mean abs difference to PIL, in uint8 levels (= share of values off by one)


def pil_reference(frames: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size) float64 uint8 levels, resized by PIL like HF."""
    out = [np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames.numpy()]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).double()


def to_levels(pixel_values: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: [-1, 1] -> [0, 255], rounded (drops float32 error, ~1e-5 level)."""
    return ((pixel_values.double() * IMAGE_STD + IMAGE_MEAN) * 255.0).round()


def diff_to_pil(frames: torch.Tensor) -> tuple[float, float]:
    """(max, mean) abs difference to PIL in uint8 levels."""
    diff = (to_levels(preprocess_frames(frames)) - pil_reference(frames)).abs()
    return diff.max().item(), diff.mean().item()


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def smooth_content(height: int, width: int) -> torch.Tensor:
    """(1, H, W, 3) gradients, a disc and a hard-edged box: natural-ish content with edges."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    img[..., 0] = 255 * x / max(width - 1, 1)
    img[..., 1] = 255 * y / max(height - 1, 1)
    img[..., 2] = 255 * ((x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 3) ** 2)
    img[height // 4 : height // 2, width // 4 : width // 2] = [255, 255, 0]
    return torch.from_numpy(img.round().astype(np.uint8))[None]


# --- shape, dtype, range, validation ------------------------------------------------------------


def test_shape_dtype_range() -> None:
    frames = noise(3, 90, 120, 3)
    out = preprocess_frames(frames)
    assert out.shape == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.is_contiguous()
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.min() < -0.9 and out.max() > 0.9  # noise uses the whole range


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_output_dtype_and_device(dtype: torch.dtype) -> None:
    frames = noise(2, 50, 70, 3)
    out = preprocess_frames(frames, device="cpu", dtype=dtype, size=32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == dtype
    ref = preprocess_frames(frames, size=32)
    assert torch.allclose(out.float(), ref, atol=1e-2)


def test_normalisation_of_constant_frames() -> None:
    frames = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 40, 30, 3)
    out = preprocess_frames(frames.contiguous())
    expected = torch.tensor([-1.0, 128 / 127.5 - 1.0, 1.0])
    for value, got in zip(expected, out, strict=True):
        assert torch.allclose(got, value.expand_as(got), atol=1e-6)


def test_input_is_not_modified() -> None:
    frames = noise(1, 384, 384, 3)
    copy = frames.clone()
    preprocess_frames(frames)
    assert torch.equal(frames, copy)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 10, 10, 3),  # float, not uint8
        torch.zeros(10, 10, 3, dtype=torch.uint8),  # 3-D
        torch.zeros(2, 10, 10, 4, dtype=torch.uint8),  # RGBA
        torch.zeros(2, 3, 10, 10, dtype=torch.uint8),  # channels first
        torch.zeros(0, 10, 10, 3, dtype=torch.uint8),  # no frame
        np.zeros((2, 10, 10, 3), dtype=np.uint8),  # not a tensor
    ],
)
def test_rejects_bad_input(bad: object) -> None:
    with pytest.raises(ValueError):
        preprocess_frames(bad)  # type: ignore[arg-type]


# --- parity with PIL ----------------------------------------------------------------------------


@pytest.mark.skipif(not JOBS.is_file(), reason=f"sample clip not found at {JOBS}")
def test_matches_pil_on_real_frames() -> None:
    from earlytom.models.video import load_video

    frames = load_video(JOBS, num_frames=8).frames  # (8, 1024, 576, 3): portrait downscale
    max_diff, mean_diff = diff_to_pil(frames)
    assert max_diff <= MAX_LEVELS and mean_diff <= MEAN_LEVELS, (max_diff, mean_diff)


@pytest.mark.parametrize(
    ("height", "width"),
    [
        (480, 640),  # landscape downscale (PIL: horizontal pass first)
        (1024, 576),  # portrait downscale (Pillow >= 13: vertical pass first)
        (120, 160),  # upscale
        (333, 517),  # odd sizes
        (517, 333),
        (500, 200),  # downscale one axis, upscale the other
        (1, 1),
    ],
)
def test_matches_pil_on_noise(height: int, width: int) -> None:
    # Noise is the hard case: every bicubic overshoot is clipped between PIL's two passes.
    max_diff, mean_diff = diff_to_pil(noise(2, height, width, 3, seed=height * 7 + width))
    assert max_diff <= MAX_LEVELS and mean_diff <= MEAN_LEVELS, (max_diff, mean_diff)


@pytest.mark.parametrize(("height", "width"), [(120, 160), (333, 517), (1024, 576)])
def test_matches_pil_on_smooth_content(height: int, width: int) -> None:
    max_diff, mean_diff = diff_to_pil(smooth_content(height, width))
    assert max_diff <= MAX_LEVELS and mean_diff <= MEAN_LEVELS, (max_diff, mean_diff)


def test_target_size_is_identity() -> None:
    frames = noise(1, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert torch.equal(to_levels(preprocess_frames(frames)), pil_reference(frames))


def test_other_size() -> None:
    frames = noise(1, 200, 300, 3)
    out = preprocess_frames(frames, size=224)
    diff = (to_levels(out) - pil_reference(frames, size=224)).abs()
    assert out.shape == (1, 3, 224, 224)
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS

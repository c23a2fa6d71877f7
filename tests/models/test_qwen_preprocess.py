"""Qwen2.5-VL preprocessing: qwen-vl-utils' sampling and sizes, HF's pixels and patch layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from earlytom.errors import InputError
from earlytom.models.qwen_vl import preprocess as qp
from earlytom.models.qwen_vl.architecture import QWEN_MAX_PIXELS


def _hf_pil_processor(min_pixels: int, max_pixels: int):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


def _hf_image_patches(image: np.ndarray, min_pixels: int, max_pixels: int) -> torch.Tensor:
    """HF's PIL image processor on one (H, W, 3) uint8 image: (gh·gw, 3, 2, 14, 14)."""
    out = _hf_pil_processor(min_pixels, max_pixels)(images=[image], return_tensors="pt")
    return out["pixel_values"].reshape(-1, 3, 2, 14, 14)


def _frames(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), dtype=torch.uint8, generator=generator)


def _smooth_frames(count: int, height: int, width: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = 127 + 120 * torch.sin(6 * xx + 3 * yy) * torch.cos(4 * yy)  # (H, W)
    return base[None, :, :, None].expand(count, height, width, 3).round().to(torch.uint8).contiguous()


# --- sampling -------------------------------------------------------------------------------


def test_frame_indices_round_the_count_to_even_and_spread_uniformly() -> None:
    for total in (32, 33, 100, 301, 7200):
        indices = qp.frame_indices(total, 32)
        n = len(indices)
        # nearest index to i·(total-1)/(n-1), in exact integer arithmetic (never a tie: n-1 is odd)
        expected = [(2 * (total - 1) * i + (n - 1)) // (2 * (n - 1)) for i in range(n)]
        assert indices == expected
    assert qp.frame_indices(32, 32) == list(range(32))
    # Python's round, half to even, as qwen-vl-utils' round_by_factor
    assert [len(qp.frame_indices(100, n)) for n in (2, 3, 5, 6, 7, 9)] == [2, 4, 4, 6, 8, 8]


def test_frame_indices_refuse_what_qwen_vl_utils_refuses() -> None:
    with pytest.raises(InputError, match="rounds to 0"):
        qp.frame_indices(100, 1)
    with pytest.raises(InputError, match="does not repeat frames, ask for at most 20"):
        qp.frame_indices(21, 32)
    with pytest.raises(InputError, match="longer video"):
        qp.frame_indices(1, 2)
    with pytest.raises(InputError):
        qp.frame_indices(100, 0)


def test_sampled_fps_is_qwen_vl_utils_rule() -> None:
    assert qp.sampled_fps(300, 32, 30.0) == pytest.approx(3.2)
    inputs = qp.preprocess_video(_frames(2, 56, 56), fps=3.2, min_pixels=3136)
    assert inputs.second_per_grid == pytest.approx(2 / 3.2)


# --- sizes ----------------------------------------------------------------------------------


def test_frame_size_matches_hf_smart_resize() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    sides = [30, 57, 97, 144, 224, 240, 333, 360, 480, 540, 720, 1080, 1920, 2160, 3840]
    limits = [(3136, QWEN_MAX_PIXELS), (qp.VIDEO_MIN_PIXELS, QWEN_MAX_PIXELS), (3136, 12845056)]
    for min_pixels, max_pixels in limits:
        for height in sides:
            for width in sides:
                if max(height, width) / min(height, width) > 200:
                    continue
                ours = qp.frame_size(height, width, max_pixels=max_pixels, min_pixels=min_pixels)
                assert ours == smart_resize(height, width, 28, min_pixels, max_pixels), (height, width)
                assert ours[0] % 28 == 0 and ours[1] % 28 == 0
                assert ours[0] * ours[1] <= max_pixels


def test_frame_size_defaults_and_edges() -> None:
    assert qp.VIDEO_MIN_PIXELS == 100352  # qwen-vl-utils' VIDEO_MIN_PIXELS = 128·28²
    assert qp.frame_size(360, 640) == (336, 588)
    assert qp.frame_size(1080, 1920) == (336, 588)
    assert qp.frame_size(224, 224) == (336, 336)  # below 100352 pixels: scaled up
    assert qp.frame_size(10, 1000, min_pixels=28 * 28) == (28, 1008)  # a side never rounds to 0
    with pytest.raises(InputError, match="aspect ratio"):
        qp.frame_size(10, 2010)
    with pytest.raises(InputError, match="no area"):
        qp.frame_size(0, 10)


def test_frame_size_video_budget() -> None:
    # fetch_video bounds max_pixels by 768·28² and by an even share of the whole-video budget
    assert qp.frame_size(1080, 1920, num_frames=32) == qp.frame_size(1080, 1920)
    big = qp.frame_size(2160, 3840, max_pixels=10**7, num_frames=32)
    assert big[0] * big[1] <= qp.VIDEO_MAX_PIXELS
    many = qp.frame_size(1080, 1920, num_frames=1024)
    assert many[0] * many[1] <= qp.VIDEO_TOTAL_PIXELS / 1024 * 2 < QWEN_MAX_PIXELS


# --- pixels and layout ----------------------------------------------------------------------


def test_patchify_matches_a_literal_layout() -> None:
    pixels = torch.randn(4, 3, 56, 84)  # t = 2, gh = 4, gw = 6
    patches = qp.patchify(pixels)
    assert patches.shape == (2, 24, 1176)
    for t in range(2):
        s = 0
        for unit_row in range(2):
            for unit_col in range(3):
                for dy in range(2):
                    for dx in range(2):
                        y, x = (2 * unit_row + dy) * 14, (2 * unit_col + dx) * 14
                        block = pixels[2 * t : 2 * t + 2, :, y : y + 14, x : x + 14]  # (2, 3, 14, 14)
                        assert torch.equal(patches[t, s], block.permute(1, 0, 2, 3).flatten())
                        s += 1


def test_matches_hf_processor_given_the_same_resized_pixels() -> None:
    """Frames already at their frame size: HF's PIL image processor on each frame (an image is a
    temporal patch of one frame repeated) gives the same values as our video patches."""
    for height, width, min_pixels in ((56, 84, 3136), (336, 588, qp.VIDEO_MIN_PIXELS)):
        frames = _frames(2, height, width, seed=height)
        inputs = qp.preprocess_video(frames, fps=2.0, min_pixels=min_pixels)
        assert inputs.grid == (1, height // 14, width // 14)
        ours = inputs.patches[0].reshape(-1, 3, 2, 14, 14)  # (S, C, frame, 14, 14)
        for k in range(2):
            hf = _hf_image_patches(frames[k].numpy(), min_pixels, QWEN_MAX_PIXELS)
            torch.testing.assert_close(ours[:, :, k], hf[:, :, k], rtol=0, atol=1e-6)
        single = qp.preprocess_video(frames[:1], fps=2.0, min_pixels=min_pixels)  # padded to 2 frames
        hf = _hf_image_patches(frames[0].numpy(), min_pixels, QWEN_MAX_PIXELS)
        torch.testing.assert_close(qp.hf_pixel_values(single), hf.reshape(-1, 1176), rtol=0, atol=1e-6)


def test_pil_resample_is_within_one_level_of_hf_pil_processor() -> None:
    level = 1 / 255 / min(qp.CLIP_STD)  # one uint8 level after normalisation
    frames = _frames(2, 100, 150)
    inputs = qp.preprocess_video(frames, fps=2.0, min_pixels=3136, resample="pil")
    ours = inputs.patches[0].reshape(-1, 3, 2, 14, 14)
    for k in range(2):
        hf = _hf_image_patches(frames[k].numpy(), 3136, QWEN_MAX_PIXELS)[:, :, k]
        diff = (ours[:, :, k] - hf).abs()
        assert float(diff.max()) <= level + 1e-5
        assert float((diff > 1e-5).float().mean()) < 0.01


def test_torchvision_resample_is_one_rounded_bicubic_pass() -> None:
    """qwen-vl-utils' torchvision resize: one 2-D antialiased bicubic pass, clamped, rounded.
    PIL's two passes with a uint8 image in between differ by at most a level on smooth content
    and by more on pixel noise (bicubic overshoot clipped between the passes)."""
    x = _frames(2, 360, 640).permute(0, 3, 1, 2).float()
    ours = qp.resize_frames(x, 336, 588)
    expected = torch.nn.functional.interpolate(x, size=(336, 588), mode="bicubic", antialias=True)
    assert torch.equal(ours, expected.clamp(0, 255).round())
    pil = torch.stack([_pil_resize(frame, 336, 588) for frame in _frames(2, 360, 640)])
    noise = (ours - pil).abs()
    assert 1 < float(noise.max()) <= 32 and float(noise.mean()) < 0.5
    smooth = _smooth_frames(2, 360, 640)
    ours = qp.resize_frames(smooth.permute(0, 3, 1, 2).float(), 336, 588)
    pil = torch.stack([_pil_resize(frame, 336, 588) for frame in smooth])
    assert float((ours - pil).abs().max()) <= 1
    assert torch.equal(qp.resize_frames(x, 360, 640), x)  # same size: no resize


def _pil_resize(frame: torch.Tensor, height: int, width: int) -> torch.Tensor:
    image = Image.fromarray(frame.numpy()).resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float()  # (3, h, w)


def test_odd_frame_count_repeats_the_last_frame() -> None:
    frames = _frames(3, 56, 56)
    inputs = qp.preprocess_video(frames, fps=4.0, min_pixels=3136, indices=[0, 5, 9])
    assert inputs.grid == (2, 4, 4)
    assert inputs.frame_indices == (0, 5, 9, 9)
    last = inputs.patches[1].reshape(-1, 3, 2, 14, 14)
    assert torch.equal(last[:, :, 0], last[:, :, 1])
    three = qp.preprocess_video(frames[2:].expand(2, -1, -1, -1), fps=4.0, min_pixels=3136)
    assert torch.equal(inputs.patches[1], three.patches[0])


def test_hf_tensors_and_shapes() -> None:
    inputs = qp.preprocess_video(_frames(4, 60, 90), fps=2.0, min_pixels=3136, dtype=torch.float16)
    assert inputs.grid == (2, 4, 6) and inputs.merged_grid == (2, 2, 3)
    assert inputs.num_video_tokens == 12
    assert inputs.patches.shape == (2, 24, 1176) and inputs.patches.dtype == torch.float16
    kwargs = qp.hf_video_kwargs(inputs)
    assert kwargs["pixel_values_videos"].shape == (48, 1176)
    assert torch.equal(kwargs["pixel_values_videos"][24:], inputs.patches[1])
    assert kwargs["video_grid_thw"].tolist() == [[2, 4, 6]]
    assert kwargs["video_grid_thw"].dtype == torch.int64
    assert kwargs["second_per_grid_ts"].dtype == torch.float32
    assert kwargs["second_per_grid_ts"].tolist() == [1.0]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="uint8"):
        qp.preprocess_video(torch.zeros(2, 56, 56, 3), fps=2.0)
    with pytest.raises(ValueError, match="shape"):
        qp.preprocess_video(torch.zeros(56, 56, 3, dtype=torch.uint8), fps=2.0)
    with pytest.raises(InputError, match="frame rate"):
        qp.preprocess_video(_frames(2, 56, 56), fps=0.0)
    with pytest.raises(ValueError, match="frame indices"):
        qp.preprocess_video(_frames(2, 56, 56), fps=2.0, indices=[0])

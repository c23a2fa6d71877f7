"""What a media file is before it is decoded, and what decoding it may cost.

Decoder-independent rules, so that PyAV and OpenCV give the same verdicts:
  * a still image (PNG, JPEG, BMP, TIFF, WebP) is recognised by its first bytes, whatever the
    file's name, and refused: it is not a video (FFmpeg would open it as a one-frame stream);
  * a video is *partial* (truncated, or undecodable from some point on) when fewer frames decode
    than its container declares: its frame count, or duration × frame rate when it records none
    (how OpenCV's FFmpeg backend counts). A shortfall within `partial_tolerance` frames is
    rounding of that estimate (or an audio track that outlasts the video), not damage;
  * the frames to be sampled, decoded and resized, must fit in the memory that is available.
"""

from __future__ import annotations

import os
from pathlib import Path

from earlytom.errors import InputError

# First bytes of the still-image formats FFmpeg opens as a one-frame "video".
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
RESIZED_BYTES_PER_FRAME = 3 * 384 * 384 * 4  # the float32 pixel values preprocessing makes of a frame


def still_image_kind(path: Path) -> str | None:
    """The image format the file starts like (PNG, JPEG, BMP, TIFF, WebP), or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return None  # unreadable: the decoder reports it
    for signature, kind in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"BM" and len(head) >= 10 and head[6:10] == b"\x00\x00\x00\x00":  # reserved fields
        return "BMP"
    return None


def declared_count(frames: int, duration_s: float | None, fps: float | None) -> int:
    """The container's frame count: its own when it records one, else round(duration × fps)."""
    if frames > 0:
        return frames
    if duration_s and fps and duration_s > 0 and fps > 0:
        return int(duration_s * fps + 0.5)
    return 0


def partial_tolerance(declared: int) -> int:
    """Missing frames that still count as whole: 1 frame or 2 % of the declared count."""
    return max(1, declared // 50)


def is_partial(decoded: int, declared: int) -> bool:
    return declared > 0 and declared - decoded > partial_tolerance(declared)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def check_frame_memory(path: Path, num_frames: int, width: int, height: int) -> None:
    """InputError when `num_frames` frames of `width`×`height`, decoded (uint8 RGB) and resized
    (float32), need more memory than is available; nothing is checked when a size is unknown."""
    available = available_memory()
    if width <= 0 or height <= 0 or available is None:
        return
    need = num_frames * (width * height * 3 + RESIZED_BYTES_PER_FRAME)
    if need > available:
        raise InputError(
            f"sampling frames={num_frames} of '{path}' ({width}×{height}) needs about {need / 1e9:.1f} GB "
            f"for the decoded and resized frames, and {available / 1e9:.1f} GB of memory is available: "
            "sample fewer frames (--frames)"
        )

"""Video decoding and uniform frame sampling with PyAV.

The sampling matches the LLaVA-OneVision reference: `num_frames` indices spread uniformly over the
whole clip with `numpy.linspace(0, total - 1, num_frames).astype(int)`, so a clip shorter than
`num_frames` repeats frames instead of returning fewer.

This is on the time-to-first-token path, so the work is kept small:
  * the frame count comes from demuxing packets (no decoding), which is cheap and exact for the
    usual containers, unlike the container's `frames` metadata which is often 0 or approximate;
  * the stream is then decoded once with frame threading, and only the sampled frames are
    converted to RGB (the YUV->RGB conversion dominates the per-frame cost after decoding).
If the decoded count disagrees with the packet count (corrupt tail, codecs with delayed or dropped
frames), the indices are recomputed from the true count and the stream is decoded a second time:
correctness first, and this path is rare.

Display-rotation metadata (phone videos) is not applied, as in the reference's
`frame.to_ndarray(format="rgb24")`: frames come out in their coded orientation.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from earlytom.errors import InputError, VideoError

# Errors PyAV raises for unreadable input. av.FFmpegError subclasses also derive from the matching
# builtins (ValueError, OSError...), OSError covers the filesystem, EOFError a truncated file.
_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, ValueError, EOFError)

_FORMAT_HINT = "pass an .mp4/.mkv/.webm/.avi/.mov file with a video stream"


@dataclass(frozen=True)
class DecodedVideo:
    """The sampled frames of one video."""

    frames: torch.Tensor  # (T, H, W, 3) uint8 RGB on CPU, T == num_frames requested
    indices: tuple[int, ...]  # index of each sampled frame in the decoded stream
    total_frames: int  # number of decodable frames
    fps: float | None
    path: Path


class ShortVideoWarning(UserWarning):
    """The video has fewer frames than requested; some frames are repeated."""


def sample_indices(total_frames: int, num_frames: int) -> list[int]:
    """Indices of `num_frames` frames spread uniformly over `total_frames` (the reference sampling).

    Rounds down like `np.linspace(...).astype(int)`; with `total_frames < num_frames` indices repeat.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames).astype(int).tolist()


def load_video(path: str | os.PathLike[str], num_frames: int = 32) -> DecodedVideo:
    """Decode `path` and return `num_frames` uniformly sampled RGB frames.

    Raises VideoError (one-line message) when the file is missing, not a video, or has no
    decodable frame, and InputError when `num_frames < 1`. Warns ShortVideoWarning when the video
    has fewer frames than `num_frames` (frames are then repeated).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"the number of frames must be a positive integer, got {num_frames!r}: pass e.g. 32")
    path = Path(path)
    _check_file(path)

    packet_count, fps = _probe(path)
    indices = sample_indices(packet_count, num_frames) if packet_count > 0 else []
    frames, decoded = _decode(path, indices)
    if decoded == 0:
        raise VideoError(f"'{path}' has a video stream but no decodable frame: pass a non-empty video")
    if decoded != packet_count:
        # The packet count was wrong (or zero): sample again from the real count.
        indices = sample_indices(decoded, num_frames)
        frames, decoded = _decode(path, indices)

    if decoded < num_frames:
        warnings.warn(
            f"'{path}' has only {decoded} frames but {num_frames} were requested: frames are repeated",
            ShortVideoWarning,
            stacklevel=2,
        )
    return DecodedVideo(frames=frames, indices=tuple(indices), total_frames=decoded, fps=fps, path=path)


def load_video_reporting(
    path: str | os.PathLike[str], num_frames: int, report: Callable[[str], None]
) -> DecodedVideo:
    """`load_video`, with a short-video warning passed to `report` (a CLI's progress line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShortVideoWarning)
        decoded = load_video(path, num_frames)
    for warning in caught:
        report(f"warning: {warning.message}")
    return decoded


def _check_file(path: Path) -> None:
    """Filesystem problems get their own message (PyAV would report them as "not a video")."""
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise VideoError(f"cannot read video '{path}': no such file") from exc
    except OSError as exc:  # permission denied on a parent folder, a dangling symlink loop...
        raise VideoError(f"cannot read video '{path}': {_reason(exc)}") from exc
    if is_dir:
        raise VideoError(f"cannot read video '{path}': it is a directory, pass a video file")


def _reason(exc: BaseException) -> str:
    """A short one-line reason from a PyAV/OS error (its strerror, without the repeated path)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except PermissionError as exc:  # av.error.PermissionError derives from it too
        raise VideoError(f"cannot read video '{path}': permission denied, check its permissions") from exc
    except _AV_ERRORS as exc:
        raise VideoError(
            f"'{path}' is not a video file PyAV can open ({_reason(exc)}): {_FORMAT_HINT}"
        ) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams}))
        found = f"only {kinds} streams" if kinds else "no streams at all"
        raise VideoError(f"'{path}' has no video stream ({found}): {_FORMAT_HINT}")
    return container.streams.video[0]


def _probe(path: Path) -> tuple[int, float | None]:
    """(number of non-empty video packets, fps) by demuxing only."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        count = 0
        try:
            # Demuxing ends with an empty flush packet (size 0), which is not a frame.
            for packet in container.demux(stream):
                if packet.size > 0:
                    count += 1
        except _AV_ERRORS:
            pass  # A damaged tail: the decode pass finds the real count and we resample.
    return count, fps


def _decode(path: Path, indices: Sequence[int]) -> tuple[torch.Tensor, int]:
    """Decode the whole stream once; return (frames at `indices` as (T, H, W, 3) uint8, decoded count).

    Only frames whose index is wanted are converted to RGB; the count covers every decodable frame.
    If some index is beyond the decoded count the returned frames are incomplete, but the caller
    then resamples from the count and decodes again.
    """
    # One index may be wanted at several positions (short videos repeat frames).
    positions: dict[int, list[int]] = {}
    for pos, index in enumerate(indices):
        positions.setdefault(index, []).append(pos)

    out: torch.Tensor | None = None  # (T, H, W, 3), allocated at the first sampled frame
    decoded = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"  # let FFmpeg decode with frame and slice threads
        try:
            for frame in container.decode(stream):
                wanted = positions.get(decoded)
                if wanted is not None:
                    if out is None:
                        out = torch.empty((len(indices), frame.height, frame.width, 3), dtype=torch.uint8)
                    # Rescale if the resolution changes mid-stream so that frames stack.
                    rgb = frame.to_ndarray(format="rgb24", width=out.shape[2], height=out.shape[1])
                    pixels = torch.from_numpy(rgb)  # (H, W, 3)
                    for pos in wanted:
                        out[pos] = pixels
                decoded += 1
        except _AV_ERRORS as exc:
            if decoded == 0:
                raise VideoError(
                    f"'{path}' has a video stream but no decodable frame ({_reason(exc)}): "
                    "pass a non-corrupt video"
                ) from exc
            # A corrupt tail: keep the frames decoded so far, they are what the clip has.
    if out is None:
        out = torch.empty((len(indices), 0, 0, 3), dtype=torch.uint8)
    return out, decoded

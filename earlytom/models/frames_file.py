"""Frames files: the sampled frames of a video in one compressed `.npz`, read back without a decoder.

A machine without a video decoder, or a benchmark that must see exactly the pixels another machine
decoded, is handed a frames file instead of the video; `load_video` reads one transparently.
32 frames of jobs.mp4 (576x1024) take 11 MB.

Format version 1, every entry a plain numpy array (read with allow_pickle=False):
  frames         uint8 (T, H, W, 3) RGB
  indices        int64 (T,), each frame's index in the decoded stream
  total_frames   int64, decodable frames of the video
  fps            float64, NaN when unknown
  source         str, the video's file name
  decoder        str, what decoded it ("pyav", "opencv", or "" when not recorded)
  format_version int64
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earlytom.errors import VideoError
from earlytom.models.video import DecodedVideo, sample_indices

SUFFIX = ".npz"
FORMAT_VERSION = 1
_KEYS = ("frames", "indices", "total_frames", "fps", "source", "decoder", "format_version")


def is_frames_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == SUFFIX


def save_frames_file(video: DecodedVideo, path: str | os.PathLike[str]) -> Path:
    """Write `video`'s frames to `path` (.npz), atomically: a reader never sees a partial file."""
    path = Path(path)
    if not is_frames_file(path):
        raise VideoError(f"a frames file is named *{SUFFIX}, got '{path}': pick a name ending in {SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "frames": video.frames.cpu().numpy(),  # (T, H, W, 3)
        "indices": np.asarray(video.indices, dtype=np.int64),
        "total_frames": np.int64(video.total_frames),
        "fps": np.float64(np.nan if video.fps is None else video.fps),
        "source": np.str_(video.source or video.path.name),
        "decoder": np.str_(video.decoder),
        "format_version": np.int64(FORMAT_VERSION),
    }
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:  # a file object: numpy adds no second .npz suffix
            np.savez_compressed(file, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_frames_file(
    path: str | os.PathLike[str], num_frames: int | None = None, *, rounding: str = "floor"
) -> DecodedVideo:
    """The DecodedVideo stored in `path`. With `num_frames`, the frames the reference sampling picks
    for that count: all of them when it matches, a subset when the stored indices hold every one,
    else VideoError (a frames file cannot add frames it does not have)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _KEYS if key not in data.files]
            if missing:
                raise VideoError(f"'{path}' is not an earlytom frames file (no {', '.join(missing)}): "
                                 "write one with benchmarks/gpu_suite.py --write-frames")  # fmt: skip
            stored = {key: data[key] for key in _KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise VideoError(
            f"'{path}' is not a readable frames file ({reason}): "
            "write one with benchmarks/gpu_suite.py --write-frames"
        ) from exc
    video = _checked(path, stored)
    if num_frames is None:
        return video
    return _subset(video, num_frames, rounding)


def _checked(path: Path, stored: dict[str, np.ndarray]) -> DecodedVideo:
    version = int(stored["format_version"])
    if version != FORMAT_VERSION:
        raise VideoError(f"'{path}' is frames file format {version}, this earlytom reads {FORMAT_VERSION}: "
                         "write it again with this version")  # fmt: skip
    frames, indices, total = stored["frames"], stored["indices"], int(stored["total_frames"])
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise VideoError(f"'{path}' holds frames of {frames.dtype} {frames.shape}, not uint8 (T, H, W, 3)")
    if indices.shape != (frames.shape[0],) or total < 1 or indices.min() < 0 or indices.max() >= total:
        raise VideoError(f"'{path}' has indices {indices.tolist()[:8]}... that do not fit {frames.shape[0]} "
                         f"frames of a {total}-frame video: write it again")  # fmt: skip
    fps = float(stored["fps"])
    return DecodedVideo(
        frames=torch.from_numpy(np.ascontiguousarray(frames)), indices=tuple(int(i) for i in indices),
        total_frames=total, fps=None if np.isnan(fps) else fps, path=path, decoder=str(stored["decoder"]),
        source=str(stored["source"]),
    )  # fmt: skip


def _subset(video: DecodedVideo, num_frames: int, rounding: str) -> DecodedVideo:
    wanted = sample_indices(video.total_frames, num_frames, rounding)
    if list(video.indices) == wanted:
        return video
    where = {index: pos for pos, index in enumerate(video.indices)}
    if any(index not in where for index in wanted):
        raise VideoError(
            f"'{video.path}' holds {len(video.indices)} sampled frames, not the {num_frames} asked for: "
            f"write a frames file with {num_frames} frames"
        )
    rows = torch.tensor([where[index] for index in wanted])
    return dataclasses.replace(video, frames=video.frames[rows], indices=tuple(wanted))

"""Video decoding and uniform frame sampling: PyAV, else OpenCV; or a frames file.

The sampling matches the LLaVA-OneVision reference: `num_frames` indices spread uniformly over the
whole clip with `numpy.linspace(0, total - 1, num_frames).astype(int)`, so a clip shorter than
`num_frames` repeats frames instead of returning fewer.

Decoders, imported only when a video is decoded (`import earlytom` never needs one):
  * PyAV, the reference, when installed;
  * else OpenCV (`opencv-python-headless`), whose FFmpeg build yields the same RGB pixels on the
    usual codecs (tested against PyAV on written clips and on jobs.mp4);
  * a `.npz` frames file (`earlytom.models.frames_file`) needs neither: `load_video` reads one
    transparently, so a machine without a decoder can be handed frames decoded elsewhere.

This is on the time-to-first-token path, so the work is kept small:
  * the frame count comes from demuxing packets (PyAV) or the stream header (OpenCV), no decoding;
  * the stream is then decoded once, and only the sampled frames are converted to RGB (the
    YUV->RGB conversion dominates the per-frame cost after decoding).
If the decoded count disagrees with that count (corrupt tail, codecs with delayed or dropped
frames, a header estimate), the indices are recomputed from the true count and the stream is
decoded a second time: correctness first, and this path is rare.

Refused before any decoding (`earlytom.models.media`): still images (by their first bytes, whatever
the name), more than MAX_FRAMES frames, and more frames than the available memory holds decoded
and resized. A *partial* video (fewer frames decode than its container declares: truncated, or
undecodable from some point on) is refused with both counts unless `allow_partial`, which samples
from the frames that decode and warns (PartialVideoWarning).

Display-rotation metadata (phone videos) is not applied, as in the reference's
`frame.to_ndarray(format="rgb24")`: frames come out in their coded orientation with both decoders.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earlytom.errors import InputError, MissingDependencyError, VideoError
from earlytom.models.context import MAX_FRAMES
from earlytom.models.media import check_frame_memory, declared_count, is_partial, still_image_kind

DECODERS = ("auto", "pyav", "opencv")
_FORMAT_HINT = "pass an .mp4/.mkv/.webm/.avi/.mov file with a video stream"
_INSTALL = {"pyav": "pip install av", "opencv": "pip install opencv-python-headless"}


@dataclass(frozen=True)
class DecodedVideo:
    """The sampled frames of one video."""

    frames: torch.Tensor  # (T, H, W, 3) uint8 RGB on CPU, T == num_frames requested
    indices: tuple[int, ...]  # index of each sampled frame in the decoded stream
    total_frames: int  # number of decodable frames
    fps: float | None
    path: Path  # the file read: the video, or the frames file
    decoder: str = ""  # what produced the pixels: "pyav" or "opencv" ("" not recorded)
    source: str = ""  # the video's file name (for a frames file: the video it was decoded from)
    declared_frames: int = 0  # frames the container declares (0: it records neither count nor duration)


@dataclass(frozen=True)
class Probe:
    """What the container says before decoding."""

    packets: int  # frame count without decoding: demuxed packets (PyAV) or the header (OpenCV)
    fps: float | None
    declared: int  # the container's frame count, or duration × rate (`media.declared_count`)
    width: int = 0  # 0: unknown
    height: int = 0


class ShortVideoWarning(UserWarning):
    """The video has fewer frames than requested; some frames are repeated."""


class PartialVideoWarning(UserWarning):
    """A truncated or partly undecodable video, accepted with allow_partial: fewer frames decoded
    than its container declares."""


SAMPLINGS = ("floor", "round")  # LLaVA's released sampling, Qwen2.5-VL's (qwen-vl-utils)


def sample_indices(total_frames: int, num_frames: int, rounding: str = "floor") -> list[int]:
    """Indices of `num_frames` frames spread uniformly over `total_frames` (the reference sampling).

    "floor" rounds down like `np.linspace(...).astype(int)` (LLaVA's scripts); "round" rounds to
    the nearest like qwen-vl-utils' `torch.linspace(...).round()`. With `total_frames <
    num_frames` indices repeat.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if rounding not in SAMPLINGS:
        raise ValueError(f"unknown rounding {rounding!r}: choose {', '.join(SAMPLINGS)}")
    if rounding == "floor":
        return np.linspace(0, total_frames - 1, num_frames).astype(int).tolist()
    # float32 like qwen-vl-utils' torch.linspace, so halves land (and round to even) as there
    return [int(i) for i in torch.linspace(0, total_frames - 1, num_frames).round().long().tolist()]


def load_video(
    path: str | os.PathLike[str],
    num_frames: int = 32,
    *,
    decoder: str = "auto",
    allow_partial: bool = False,
    rounding: str = "floor",
) -> DecodedVideo:
    """Decode `path` (or read a `.npz` frames file) and return `num_frames` uniformly sampled RGB frames.

    `decoder`: "auto" (PyAV, else OpenCV), "pyav" or "opencv"; a frames file needs none.
    `rounding`: how the uniform indices round (`sample_indices`; each model family has its own).
    Raises VideoError (one-line message) when the file is missing, not a video (a still image
    included), has no decodable frame, or is partial (unless `allow_partial`), InputError when
    `num_frames` is not in 1..MAX_FRAMES or its frames do not fit in memory, and
    MissingDependencyError when no decoder is installed. Warns ShortVideoWarning when the video
    has fewer frames than `num_frames` (frames are then repeated) and PartialVideoWarning for a
    partial video accepted with `allow_partial`.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"the number of frames must be a positive integer, got {num_frames!r}: pass e.g. 32")
    if num_frames > MAX_FRAMES:
        raise InputError(f"frames={num_frames} is out of range: sample at most {MAX_FRAMES} frames")
    path = Path(path)
    _check_file(path)
    kind = still_image_kind(path)
    if kind is not None:
        raise VideoError(f"'{path}' is a still image ({kind}), not a video: {_FORMAT_HINT}")
    from earlytom.models.frames_file import is_frames_file, load_frames_file

    if is_frames_file(path):
        video = load_frames_file(path, num_frames, rounding=rounding)
    else:
        video = _decode_sampled(path, num_frames, resolve_decoder(decoder), allow_partial, rounding)
    if video.total_frames < num_frames:
        warnings.warn(
            f"'{path}' has only {video.total_frames} frames but {num_frames} were requested: "
            "frames are repeated",
            ShortVideoWarning,
            stacklevel=2,
        )
    return video


def load_video_reporting(
    path: str | os.PathLike[str],
    num_frames: int,
    report: Callable[[str], None],
    *,
    allow_partial: bool = False,
    rounding: str = "floor",
) -> DecodedVideo:
    """`load_video`, with short- and partial-video warnings passed to `report` (a CLI's progress line)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShortVideoWarning)
        warnings.simplefilter("always", PartialVideoWarning)
        decoded = load_video(path, num_frames, allow_partial=allow_partial, rounding=rounding)
    for warning in caught:
        report(f"warning: {warning.message}")
    return decoded


def resolve_decoder(decoder: str = "auto") -> str:
    """The installed decoder to use: "pyav" or "opencv"; MissingDependencyError when none is."""
    if decoder not in DECODERS:
        raise InputError(f"unknown video decoder '{decoder}': choose {', '.join(DECODERS)}")
    for name in ("pyav", "opencv") if decoder == "auto" else (decoder,):
        if _import(name) is not None:
            return name
    if decoder == "auto":
        raise MissingDependencyError(
            "decoding a video needs PyAV or OpenCV: pip install av (or opencv-python-headless), "
            "or pass a .npz frames file"
        )
    raise MissingDependencyError(f"the '{decoder}' video decoder is not installed: {_INSTALL[decoder]}")


def _import(name: str) -> Any:
    """The decoder's module, or None when it cannot be imported (absent, or its libraries missing)."""
    try:
        if name == "pyav":
            import av

            return av
        import cv2

        return cv2
    except ImportError:
        return None


def _decode_sampled(
    path: Path, num_frames: int, decoder: str, allow_partial: bool = False, rounding: str = "floor"
) -> DecodedVideo:
    probe = _probe(path, decoder)
    check_frame_memory(path, num_frames, probe.width, probe.height)
    indices = sample_indices(probe.packets, num_frames, rounding) if probe.packets > 0 else []
    frames, decoded = _decode(path, indices, decoder)
    if decoded == 0:
        raise VideoError(f"'{path}' has a video stream but no decodable frame: pass a non-empty video")
    if is_partial(decoded, probe.declared):
        _partial(path, decoded, probe.declared, allow_partial)
    if decoded != probe.packets:
        # The first count was wrong (or zero): sample again from the real count.
        indices = sample_indices(decoded, num_frames, rounding)
        frames, decoded = _decode(path, indices, decoder)
    return DecodedVideo(frames=frames, indices=tuple(indices), total_frames=decoded, fps=probe.fps, path=path,
                        decoder=decoder, source=path.name, declared_frames=probe.declared)  # fmt: skip


def _partial(path: Path, decoded: int, declared: int, allow_partial: bool) -> None:
    """A partial video: refused, or (allow_partial) a PartialVideoWarning."""
    counts = f"{decoded} of the {declared} frames its container declares decode"
    if not allow_partial:
        raise VideoError(
            f"'{path}' is truncated or partly undecodable: {counts}; pass --allow-partial-video "
            f"(allow_partial=True) to sample from the {decoded} that do"
        )
    warnings.warn(
        f"'{path}' is truncated or partly undecodable: {counts}; sampling from those {decoded}",
        PartialVideoWarning,
        stacklevel=4,
    )


def _probe(path: Path, decoder: str) -> Probe:
    """What the container says: frame count without decoding, fps, declared count, size."""
    return _probe_pyav(path) if decoder == "pyav" else _probe_opencv(path)


def _decode(path: Path, indices: Sequence[int], decoder: str) -> tuple[torch.Tensor, int]:
    """Decode the whole stream once; return (frames at `indices` as (T, H, W, 3) uint8, decoded count).

    Only frames whose index is wanted are converted to RGB; the count covers every decodable frame.
    If some index is beyond the decoded count the returned frames are incomplete, but the caller
    then resamples from the count and decodes again.
    """
    return _decode_pyav(path, indices) if decoder == "pyav" else _decode_opencv(path, indices)


def _positions(indices: Sequence[int]) -> dict[int, list[int]]:
    """Frame index -> output positions (one index may be wanted several times: short videos repeat)."""
    positions: dict[int, list[int]] = {}
    for pos, index in enumerate(indices):
        positions.setdefault(index, []).append(pos)
    return positions


def _check_file(path: Path) -> None:
    """Filesystem problems get their own message (a decoder would report them as "not a video")."""
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise VideoError(f"cannot read video '{path}': no such file") from exc
    except OSError as exc:  # permission denied on a parent folder, a dangling symlink loop...
        raise VideoError(f"cannot read video '{path}': {_reason(exc)}") from exc
    if is_dir:
        raise VideoError(f"cannot read video '{path}': it is a directory, pass a video file")
    if not os.access(path, os.R_OK):
        raise VideoError(f"cannot read video '{path}': permission denied, check its permissions")


def _reason(exc: BaseException) -> str:
    """A short one-line reason from a decoder/OS error (its strerror, without the repeated path)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


# --- PyAV ---------------------------------------------------------------------------------------


def _av_errors(av: Any) -> tuple[type[BaseException], ...]:
    # av.FFmpegError subclasses also derive from the matching builtins (ValueError, OSError...),
    # OSError covers the filesystem, EOFError a truncated file.
    return (av.FFmpegError, OSError, ValueError, EOFError)


def _open_pyav(path: Path) -> Any:
    av = _import("pyav")
    try:
        return av.open(str(path), mode="r")
    except PermissionError as exc:  # av.error.PermissionError derives from it too
        raise VideoError(f"cannot read video '{path}': permission denied, check its permissions") from exc
    except _av_errors(av) as exc:
        raise VideoError(
            f"'{path}' is not a video file PyAV can open ({_reason(exc)}): {_FORMAT_HINT}"
        ) from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams}))
        found = f"only {kinds} streams" if kinds else "no streams at all"
        raise VideoError(f"'{path}' has no video stream ({found}): {_FORMAT_HINT}")
    return container.streams.video[0]


def _probe_pyav(path: Path) -> Probe:
    """The number of non-empty video packets (by demuxing only), fps, declared count and size."""
    errors = _av_errors(_import("pyav"))
    with _open_pyav(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        # As OpenCV's FFmpeg backend: the container's duration, else the stream's.
        duration = container.duration / 1e6 if container.duration else None
        if not duration and stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        declared = declared_count(int(stream.frames or 0), duration, fps)
        size = (int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
        count = 0
        try:
            # Demuxing ends with an empty flush packet (size 0), which is not a frame.
            for packet in container.demux(stream):
                if packet.size > 0:
                    count += 1
        except errors:
            pass  # A damaged tail: the decode pass finds the real count and we resample.
    return Probe(count, fps, declared, *size)


def _decode_pyav(path: Path, indices: Sequence[int]) -> tuple[torch.Tensor, int]:
    errors = _av_errors(_import("pyav"))
    positions = _positions(indices)
    out: torch.Tensor | None = None  # (T, H, W, 3), allocated at the first sampled frame
    decoded = 0
    with _open_pyav(path) as container:
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
        except errors as exc:
            if decoded == 0:
                raise VideoError(
                    f"'{path}' has a video stream but no decodable frame ({_reason(exc)}): "
                    "pass a non-corrupt video"
                ) from exc
            # A corrupt tail: keep the frames decoded so far, they are what the clip has.
    return _or_empty(out, indices), decoded


def _or_empty(out: torch.Tensor | None, indices: Sequence[int]) -> torch.Tensor:
    return out if out is not None else torch.empty((len(indices), 0, 0, 3), dtype=torch.uint8)


# --- OpenCV -------------------------------------------------------------------------------------


def _open_opencv(path: Path) -> tuple[Any, Any]:
    cv2 = _import("opencv")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()  # OpenCV gives no reason: audio-only, not a video, or an unknown codec
        raise VideoError(f"'{path}' is not a video file OpenCV can open: {_FORMAT_HINT}")
    # Coded orientation, as PyAV gives (OpenCV would apply the rotation metadata by default).
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return cv2, capture


def _probe_opencv(path: Path) -> Probe:
    """The stream header's frame count (exact for MP4, else duration × fps: the declared count
    too), fps and size."""
    cv2, capture = _open_opencv(path)
    try:
        count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
    return Probe(max(count, 0), fps if fps > 0 else None, max(count, 0), *size)


def _decode_opencv(path: Path, indices: Sequence[int]) -> tuple[torch.Tensor, int]:
    positions = _positions(indices)
    out: torch.Tensor | None = None  # (T, H, W, 3)
    decoded = 0
    cv2, capture = _open_opencv(path)
    try:
        while capture.grab():  # decodes; retrieve() converts, and only wanted frames pay for it
            wanted = positions.get(decoded)
            if wanted is not None:
                ok, bgr = capture.retrieve()
                if not ok:
                    break  # a frame that does not convert ends the stream, as a corrupt tail does
                if out is None:
                    out = torch.empty((len(indices), *bgr.shape[:2], 3), dtype=torch.uint8)
                if bgr.shape[:2] != tuple(out.shape[1:3]):  # resolution changed mid-stream
                    bgr = cv2.resize(bgr, (out.shape[2], out.shape[1]), interpolation=cv2.INTER_LINEAR)
                pixels = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))  # (H, W, 3)
                for pos in wanted:
                    out[pos] = pixels
            decoded += 1
    finally:
        capture.release()
    return _or_empty(out, indices), decoded

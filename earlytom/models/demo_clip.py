"""The project's own demo clip: a procedural video written with PyAV and cached like `tiny`.

Ten seconds at 24 fps, 320×240, three shots that exercise every part of EarlyTom: a pan over a
textured landscape with a bouncing ball (motion), a hard cut to a still shot of a room (frames
that merge), and a cut to a square moving over a scrolling checkerboard (motion again). It is
drawn from a fixed seed and written once under `$XDG_CACHE_HOME/earlytom` (or
`~/.cache/earlytom`); `--video demo` and `earlytom demo-clip` use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from earlytom.errors import MissingDependencyError, VideoError

# Bump whenever anything below changes what gets written: it names the cached file.
DEMO_VERSION = "1"
DEMO_NAME = "demo"  # the --video value that stands for this clip
WIDTH, HEIGHT, FPS = 320, 240, 24
SHOTS = (("pan", 90), ("still", 80), ("square", 70))  # (kind, frames): 240 frames in all
SEED = 20260101


def demo_clip_path(cache_dir: Path | None = None) -> Path:
    """The cached demo clip, written first if missing (atomically: a partial file never shows)."""
    from earlytom.models.tiny import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / f"demo-v{DEMO_VERSION}.mp4"
    if final.is_file():
        return final
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".demo-v{DEMO_VERSION}-", suffix=".mp4", dir=cache_dir)
    except OSError as exc:
        raise VideoError(f"cannot write the demo clip into {cache_dir}: {exc.strerror or exc}") from exc
    os.close(handle)
    tmp = Path(name)
    try:
        write_demo_clip(tmp)
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_demo_clip(path: Path) -> Path:
    """Write the three shots to `path` (MPEG-4 Part 2, in every FFmpeg build)."""
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("writing the demo clip needs PyAV: pip install av") from exc
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 1_500_000
        for rgb in demo_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())  # flush
    return path


def demo_frames() -> list[np.ndarray]:
    """Every frame of the clip as (H, W, 3) uint8 RGB, deterministic."""
    rng = np.random.default_rng(SEED)
    frames: list[np.ndarray] = []
    for kind, count in SHOTS:
        if kind == "pan":
            frames += _pan(rng, count)
        elif kind == "still":
            frames += [_room(rng)] * count
        else:
            frames += _square(count)
    return frames


def _pan(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """A 3 px/frame pan over hills under a sky, with a red ball bouncing across."""
    wide = WIDTH + 3 * count
    y, x = np.mgrid[0:HEIGHT, 0:wide]  # (H, W')
    scene = np.empty((HEIGHT, wide, 3), np.float32)
    scene[...] = (90, 150, 230)
    scene[..., 0] += y * 0.3  # the sky warms towards the horizon
    ground = y > HEIGHT * 0.55 + 18 * np.sin(x / 37.0) + 9 * np.sin(x / 11.0)
    texture = rng.integers(0, 40, size=(HEIGHT // 8 + 1, wide // 8 + 1)).repeat(8, 0).repeat(8, 1)
    texture = texture[:HEIGHT, :wide]  # (H, W') grass in 8 px cells
    grass = np.stack([40 + texture, 120 + texture, np.full_like(texture, 40)], -1)
    scene[ground] = grass[ground]
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for i in range(count):
        view = scene[:, 3 * i : 3 * i + WIDTH].copy()  # (H, W, 3)
        cx, cy = 20 + i * (WIDTH - 40) / count, HEIGHT * 0.35 + 50 * abs(np.sin(i / 9.0))
        view[(cols - cx) ** 2 + (rows - cy) ** 2 < 14**2] = (220, 30, 30)
        frames.append(view.clip(0, 255).astype(np.uint8))
    return frames


def _room(rng: np.random.Generator) -> np.ndarray:
    """One still frame: a wall, a window, a table and a lamp."""
    room = np.empty((HEIGHT, WIDTH, 3), np.float32)
    room[...] = (200, 180, 150)
    room += rng.normal(0, 4, size=(HEIGHT, WIDTH, 1)).astype(np.float32)  # plaster grain
    room[30:110, 190:290] = (150, 200, 240)  # window
    room[68:72, 190:290] = room[30:110, 238:242] = (90, 70, 50)  # its bars
    room[150:165, 30:230] = (120, 80, 40)  # table top
    room[165:240, 45:60] = room[165:240, 200:215] = (100, 65, 30)  # legs
    room[110:150, 80:110] = (240, 220, 120)  # lamp shade
    return room.clip(0, 255).astype(np.uint8)


def _square(count: int) -> list[np.ndarray]:
    """A blue square moving over a checkerboard that scrolls the other way."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = []
    for i in range(count):
        board = (((x + 2 * i) // 20 + y // 20) % 2).astype(np.float32)
        frame = np.stack([60 + 150 * board, 60 + 150 * board, 60 + 100 * board], -1)
        left, top = 10 + 3 * i, 20 + 2 * i
        frame[top : top + 50, left : left + 50] = (30, 60, 220)
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return frames

"""Test videos written with PyAV: frame i is a flat colour that encodes i.

R = 16 * (i % 16) + 8, G = 16 * (i // 16) + 8, so a decoded frame's index can be read back from its
mean colour despite compression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_rgb(index: int, width: int, height: int) -> np.ndarray:
    rgb = np.zeros((height, width, 3), dtype=np.uint8)  # (H, W, 3)
    rgb[..., 0] = 16 * (index % 16) + 8
    rgb[..., 1] = 16 * (index // 16) + 8
    rgb[..., 2] = 128
    return rgb


def write_video(
    path: Path, num_frames: int, width: int = 96, height: int = 64, fps: int = 25, *, faststart: bool = False
) -> Path:
    """An mpeg4 video of `num_frames` index-coded frames (zero frames: header only). `faststart`: an
    MP4 whose index comes first, so that a copy cut short still opens (as a truncated download does)."""
    import av  # here, not at the top: modules that merely import this helper collect without PyAV

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 5_000_000  # high enough that flat colours survive within ~3 levels
        # PyAV writes the header lazily at the first packet; force it so empty files exist.
        container.start_encoding()
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush
    return path

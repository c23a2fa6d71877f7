"""A corpus of small procedural clips that stress Stage I's float decisions (DESIGN §7).

Each clip is a named, seeded generator of RGB frames written with PyAV: still and sensor-noisy
shots, pans, cuts, frozen frames and tails, exact duplicates, very short videos (which the
sampler repeats to 32 frames), odd sizes, fades and combinations. Frozen and duplicate frames
make exact ties between similarities, the case where two backends' rounding decides a merge.

Most clips use mpeg4 (lossy, like real videos: a "frozen" frame decodes almost, not exactly,
equal); clips that need bitwise-equal frames use lossless FFV1 in Matroska.

    python benchmarks/clips.py --out /tmp/clips      # writes every clip, prints name and size
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

Frame = np.ndarray  # (H, W, 3) uint8 RGB
Generator = Callable[[np.random.Generator, int, int], list[Frame]]


@dataclass(frozen=True)
class ClipSpec:
    name: str
    what: str  # one line: what the clip stresses
    width: int
    height: int
    generate: Generator  # (rng, width, height) -> frames
    lossless: bool = False  # FFV1 (bitwise-equal duplicates survive) instead of mpeg4
    fps: int = 25
    seed: int | None = None  # None: from the name

    @property
    def filename(self) -> str:
        return f"{self.name}.{'mkv' if self.lossless else 'mp4'}"

    def frames(self) -> list[Frame]:
        rng = np.random.default_rng(zlib.crc32(self.name.encode()) if self.seed is None else self.seed)
        return self.generate(rng, self.width, self.height)


# --- building blocks ---------------------------------------------------------------------------


def texture(rng: np.random.Generator, width: int, height: int, cell: int = 8) -> np.ndarray:
    """A smooth random colour field (H, W, 3) float32 in [0, 255]: a coarse grid upsampled bicubically."""
    coarse = rng.integers(0, 256, (max(2, height // cell), max(2, width // cell), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)


def to_frame(image: np.ndarray) -> Frame:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def noisy(rng: np.random.Generator, image: np.ndarray, sigma: float) -> Frame:
    """Sensor noise: independent Gaussian noise on every pixel of every frame."""
    return to_frame(image + rng.normal(0.0, sigma, image.shape))


def pan(scene: np.ndarray, width: int, height: int, count: int, step: float) -> list[Frame]:
    """`count` windows of width × height sliding right by `step` px per frame over a wider scene."""
    out = []
    for i in range(count):
        x = round(i * step) % max(1, scene.shape[1] - width)
        out.append(to_frame(scene[:height, x : x + width]))
    return out


def still(rng: np.random.Generator, width: int, height: int, count: int, sigma: float = 0.0) -> list[Frame]:
    image = texture(rng, width, height)
    return [noisy(rng, image, sigma) if sigma else to_frame(image) for _ in range(count)]


# --- the clips -----------------------------------------------------------------------------------


def _static_clean(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return still(rng, w, h, 48)


def _static_noisy(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return still(rng, w, h, 48, sigma=6.0)


def _static_very_noisy(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return still(rng, w, h, 48, sigma=25.0)


def _slow_pan(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return pan(texture(rng, w * 2, h, cell=12), w, h, 48, step=1.0)


def _fast_pan(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return pan(texture(rng, w * 4, h, cell=12), w, h, 40, step=7.0)


def _noisy_pan(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return [noisy(rng, f.astype(np.float32), 8.0) for f in pan(texture(rng, w * 2, h), w, h, 48, 1.5)]


def _hard_cut(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return still(rng, w, h, 24, sigma=2.0) + still(rng, w, h, 24, sigma=2.0)


def _many_cuts(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return [f for _ in range(8) for f in still(rng, w, h, 6, sigma=3.0)]


def _frozen_tail(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    moving = pan(texture(rng, w * 2, h), w, h, 28, step=2.0)
    return moving + [moving[-1]] * 20


def _frozen_middle(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    moving = pan(texture(rng, w * 3, h), w, h, 32, step=2.0)
    return moving[:16] + [moving[15]] * 16 + moving[16:]


def _duplicate_pairs(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return [f for f in pan(texture(rng, w * 2, h), w, h, 24, step=2.0) for _ in range(2)]


def _frozen_exact(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return still(rng, w, h, 40)  # lossless: every frame bitwise equal after decoding


def _short_repeats(count: int) -> Generator:
    def generate(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
        return pan(texture(rng, w * 2, h), w, h, count, step=3.0)

    return generate


def _fade(direction: str) -> Generator:
    def generate(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
        image = texture(rng, w, h)
        ramp = np.linspace(0.0, 1.0, 40) if direction == "in" else np.linspace(1.0, 0.0, 40)
        return [to_frame(image * a) for a in ramp]

    return generate


def _crossfade(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    a, b = texture(rng, w, h), texture(rng, w, h)
    return [to_frame((1 - t) * a + t * b) for t in np.linspace(0.0, 1.0, 40)]


def _flicker(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    image = texture(rng, w, h)
    return [to_frame(image * (0.6 if i % 2 else 1.0)) for i in range(40)]


def _moving_square(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    background, out = texture(rng, w, h), []
    for i in range(40):
        image = background.copy()
        x, y = (i * 3) % (w - 16), h // 3
        image[y : y + 16, x : x + 16] = (250, 30, 30)
        out.append(to_frame(image))
    return out


def _black(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return [np.zeros((h, w, 3), np.uint8) for _ in range(32)]


def _random_noise(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(32)]


def _noisy_cut_frozen(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    """The case that first showed a flip: a still sensor-noisy shot, a hard cut, a frozen tail."""
    shot = still(rng, w, h, 24, sigma=6.0)
    cut = pan(texture(rng, w * 2, h), w, h, 12, step=2.0)
    return shot + cut + [cut[-1]] * 12


def _still_cut_tie(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    """Found by a seed search: one merge of the tiny model is decided by a margin of 6e-8, below
    the fp32 noise between backends (a real near tie, not a constructed one)."""
    shot = still(rng, w, h, 26, sigma=10.0)
    cut = pan(texture(rng, w * 2, h), w, h, 6, step=0.0)
    return shot + cut + [cut[-1]] * 5


def _cut_duplicates_frozen(rng: np.random.Generator, w: int, h: int) -> list[Frame]:
    first = [f for f in still(rng, w, h, 10, sigma=4.0) for _ in range(2)]
    second = pan(texture(rng, w * 2, h), w, h, 16, step=1.0)
    return first + second + [second[-1]] * 16


def _clip_list() -> list[ClipSpec]:
    w, h = 128, 96
    return [
        ClipSpec("static_clean", "one still image", w, h, _static_clean),
        ClipSpec("static_noisy", "still + sensor noise σ=6", w, h, _static_noisy),
        ClipSpec("static_very_noisy", "still + sensor noise σ=25", w, h, _static_very_noisy),
        ClipSpec("slow_pan", "pan by 1 px per frame", w, h, _slow_pan),
        ClipSpec("fast_pan", "pan by 7 px per frame", w, h, _fast_pan),
        ClipSpec("noisy_pan", "pan by 1.5 px + sensor noise", w, h, _noisy_pan),
        ClipSpec("hard_cut", "two stills, one hard cut", w, h, _hard_cut),
        ClipSpec("many_cuts", "a cut every 6 frames", w, h, _many_cuts),
        ClipSpec("frozen_tail", "pan, then the last frame held 20 frames", w, h, _frozen_tail),
        ClipSpec("frozen_middle", "pan, frozen 16 frames in the middle", w, h, _frozen_middle),
        ClipSpec("duplicate_pairs", "every frame written twice (mpeg4)", w, h, _duplicate_pairs),
        ClipSpec("duplicate_pairs_exact", "every frame twice, lossless", w, h, _duplicate_pairs, True),
        ClipSpec("frozen_exact", "one still, lossless: bitwise-equal frames", w, h, _frozen_exact, True),
        ClipSpec("short_10", "10 frames, sampled with repeats", w, h, _short_repeats(10)),
        ClipSpec("short_20", "20 frames, sampled with repeats", w, h, _short_repeats(20)),
        ClipSpec("one_frame", "a single frame", w, h, _short_repeats(1)),
        ClipSpec("two_frames", "two frames", w, h, _short_repeats(2)),
        ClipSpec("three_frames", "three frames", w, h, _short_repeats(3)),
        ClipSpec("odd_97x61", "odd size 97×61", 97, 61, _slow_pan),
        ClipSpec("hd_1280x720", "1280×720 noisy still", 1280, 720, lambda r, a, b: still(r, a, b, 12, 6.0)),
        ClipSpec("portrait_360x640", "portrait 360×640 pan", 360, 640, _frozen_tail),
        ClipSpec("fade_in", "fade in from black", w, h, _fade("in")),
        ClipSpec("fade_out", "fade out to black", w, h, _fade("out")),
        ClipSpec("crossfade", "crossfade between two stills", w, h, _crossfade),
        ClipSpec("flicker", "brightness alternating every frame", w, h, _flicker),
        ClipSpec("moving_square", "a square moving over a still background", w, h, _moving_square),
        ClipSpec("black", "all-black frames", w, h, _black),
        ClipSpec("random_noise", "independent noise frames", w, h, _random_noise),
        ClipSpec("noisy_cut_frozen", "noisy still + hard cut + frozen tail", w, h, _noisy_cut_frozen),
        ClipSpec(
            "still_cut_tie", "noisy still + cut + short frozen tail", w, h, _still_cut_tie, seed=3785948076
        ),
        ClipSpec("cut_duplicates_frozen", "duplicates, cut, pan, frozen tail", w, h, _cut_duplicates_frozen),
    ]


CLIPS: dict[str, ClipSpec] = {clip.name: clip for clip in _clip_list()}


def write_clip(clip: ClipSpec, folder: Path) -> Path:
    """Write one clip into `folder` (mpeg4 in .mp4, or FFV1 in .mkv when lossless)."""
    path = folder / clip.filename
    with av.open(str(path), "w") as container:
        codec, pix_fmt = ("ffv1", "bgr0") if clip.lossless else ("mpeg4", "yuv420p")
        stream = container.add_stream(codec, rate=clip.fps)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, pix_fmt
        if not clip.lossless:
            stream.bit_rate = 5_000_000  # high enough that noise and texture survive
        for image in clip.frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())  # flush
    return path


def write_clips(folder: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Write every clip (or the named ones) into `folder`; returns name -> path, in corpus order."""
    folder.mkdir(parents=True, exist_ok=True)
    return {clip.name: write_clip(clip, folder) for clip in _selected(names)}


def _selected(names: list[str] | None) -> Iterator[ClipSpec]:
    for name in names or list(CLIPS):
        if name not in CLIPS:
            raise SystemExit(f"unknown clip '{name}': choose from {', '.join(CLIPS)}")
        yield CLIPS[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("names", nargs="*", help="clips to write (default: all)")
    args = parser.parse_args()
    for name, path in write_clips(args.out, args.names).items():
        print(f"{name:24s} {CLIPS[name].what:48s} {path.stat().st_size:>9d} B")


if __name__ == "__main__":
    main()

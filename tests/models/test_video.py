"""Tests for earlytom.models.video: frame sampling, decoding with PyAV or OpenCV, frames files and
user-facing errors.

Videos are generated with PyAV in tmp_path. Frame i is a flat colour that encodes i
(R = 16 * (i % 16) + 8, G = 16 * (i // 16) + 8), so the index of a decoded frame can be read back
from its mean colour despite compression (errors stay within ~3 levels, the step is 16).
Tests that need PyAV (to write clips) or OpenCV skip with the reason when it is not installed; a
missing PyAV is simulated in a subprocess whose `sys.modules["av"]` is None.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from earlytom.errors import InputError, VideoError
from earlytom.models import video as video_mod
from earlytom.models.video import DecodedVideo, ShortVideoWarning, load_video, sample_indices

try:
    import av
    from videos import write_video
except ImportError:  # no PyAV: the tests that write clips skip, the rest still run
    av = None
try:
    import cv2
except ImportError:
    cv2 = None

JOBS = Path(__file__).resolve().parents[3] / "shared/data/jobs.mp4"
REPO = Path(__file__).resolve().parents[2]
needs_av = pytest.mark.skipif(av is None, reason="PyAV is not installed: the test clips are written with it")
needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv-python-headless is not installed")
needs_jobs = pytest.mark.skipif(not JOBS.is_file(), reason=f"sample clip not found at {JOBS}")
DECODERS = [pytest.param("pyav", marks=needs_av), pytest.param("opencv", marks=[needs_av, needs_cv2])]


def _frame_index(frame: torch.Tensor) -> int:
    """The index encoded in a decoded (H, W, 3) frame; asserts the colour is close to a code."""
    r, g, _ = frame.reshape(-1, 3).double().mean(0).tolist()
    low, high = round((r - 8) / 16), round((g - 8) / 16)
    assert abs(r - (16 * low + 8)) < 6 and abs(g - (16 * high + 8)) < 6, (r, g)
    return 16 * high + low


def write_audio(path: Path) -> Path:
    """An audio-only file (mp2, available in every FFmpeg build)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mp2", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152 * 4), np.int16), format="s16", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _assert_one_line_video_error(path: Path, *fragments: str, decoder: str = "auto") -> str:
    with pytest.raises(VideoError) as info:
        load_video(path, num_frames=4, decoder=decoder)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert path.name in message
    for fragment in fragments:
        assert fragment in message
    return message


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter at the repository root (the project importable from there)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)


# --- sample_indices -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "num"),
    [(524, 32), (100, 8), (40, 8), (32, 32), (33, 32), (31, 32), (10, 32), (1, 5), (7, 1), (1, 1), (2, 3)],
)
def test_sample_indices_matches_reference(total: int, num: int) -> None:
    expected = np.linspace(0, total - 1, num).astype(int).tolist()
    got = sample_indices(total, num)
    assert got == expected
    assert len(got) == num and got[0] == 0
    assert all(isinstance(i, int) for i in got)
    assert got == sorted(got) and max(got) <= total - 1


def test_sample_indices_rejects_empty() -> None:
    with pytest.raises(ValueError):
        sample_indices(0, 4)
    with pytest.raises(ValueError):
        sample_indices(4, 0)


# --- load_video, with each decoder ----------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
def test_load_video_samples_the_right_frames(tmp_path: Path, decoder: str) -> None:
    path = write_video(tmp_path / "clip.mp4", 40, width=96, height=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortVideoWarning)
        video = load_video(str(path), num_frames=8, decoder=decoder)
    assert isinstance(video, DecodedVideo)
    assert video.frames.shape == (8, 64, 96, 3)
    assert video.frames.dtype == torch.uint8 and video.frames.device.type == "cpu"
    assert video.indices == tuple(sample_indices(40, 8))
    assert video.total_frames == 40
    assert video.fps == pytest.approx(25.0)
    assert video.path == path and video.source == "clip.mp4" and video.decoder == decoder
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("num_frames", [1, 32, 40])
def test_load_video_frame_counts(tmp_path: Path, num_frames: int, decoder: str) -> None:
    path = write_video(tmp_path / "clip.mkv", 40, width=64, height=48)
    video = load_video(path, num_frames=num_frames, decoder=decoder)
    assert video.frames.shape == (num_frames, 48, 64, 3)
    assert video.indices == tuple(sample_indices(40, num_frames))
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("decoder", DECODERS)
def test_short_video_warns_and_repeats(tmp_path: Path, decoder: str) -> None:
    path = write_video(tmp_path / "short.mp4", 10, width=64, height=48)
    with pytest.warns(ShortVideoWarning) as record:
        video = load_video(path, num_frames=32, decoder=decoder)
    message = str(record[0].message)
    assert "\n" not in message and "10" in message and "32" in message
    assert video.frames.shape == (32, 48, 64, 3)
    assert video.total_frames == 10
    assert video.indices == tuple(sample_indices(10, 32))
    assert len(set(video.indices)) == 10  # every frame used, several repeated
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("wrong_count", [0, 30, 45])
def test_frame_count_mismatch_resamples_from_decoded_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong_count: int, decoder: str
) -> None:
    # Simulate a container whose packet count (or header count) disagrees with the decodable frames.
    path = write_video(tmp_path / "clip.mp4", 40, width=64, height=48)
    monkeypatch.setattr(video_mod, "_probe", lambda _path, _decoder: video_mod.Probe(wrong_count, 25.0, 0))
    video = load_video(path, num_frames=8, decoder=decoder)
    assert video.total_frames == 40
    assert video.indices == tuple(sample_indices(40, 8))
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_video_keeps_decodable_frames_when_allowed(tmp_path: Path, decoder: str) -> None:
    full = write_video(tmp_path / "full.mkv", 60, width=64, height=48)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError, match=r"truncated or partly undecodable: \d+ of the 60 frames"):
        load_video(cut, num_frames=8, decoder=decoder)
    with pytest.warns(video_mod.PartialVideoWarning):
        video = load_video(cut, num_frames=8, decoder=decoder, allow_partial=True)
    assert 0 < video.total_frames < 60
    assert video.frames.shape == (8, 48, 64, 3)
    assert video.indices == tuple(sample_indices(video.total_frames, 8))


@pytest.mark.parametrize("num_frames", [0, -3])
def test_bad_num_frames(tmp_path: Path, num_frames: int) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError) as info:
        load_video(path, num_frames=num_frames)
    assert "\n" not in str(info.value)


def test_unknown_decoder(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="unknown video decoder 'ffmpeg'"):
        load_video(path, num_frames=4, decoder="ffmpeg")


# --- OpenCV against PyAV ------------------------------------------------------------------------


@needs_av
@needs_cv2
@pytest.mark.parametrize(
    ("name", "count", "num_frames"), [("clip.mp4", 40, 8), ("clip.mkv", 33, 33), ("s.avi", 7, 12)]
)
def test_opencv_gives_pyav_pixels_on_written_clips(
    tmp_path: Path, name: str, count: int, num_frames: int
) -> None:
    path = write_video(tmp_path / name, count, width=80, height=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortVideoWarning)
        reference, fallback = (load_video(path, num_frames, decoder=d) for d in ("pyav", "opencv"))
    assert fallback.indices == reference.indices and fallback.total_frames == reference.total_frames == count
    assert fallback.fps == pytest.approx(reference.fps)
    assert torch.equal(fallback.frames, reference.frames)  # measured: max difference 0


@needs_av
@needs_cv2
@needs_jobs
def test_opencv_gives_pyav_pixels_on_jobs() -> None:
    reference, fallback = (load_video(JOBS, 32, decoder=d) for d in ("pyav", "opencv"))
    assert fallback.indices == reference.indices and fallback.total_frames == reference.total_frames == 524
    assert fallback.fps == pytest.approx(30.0)
    difference = (fallback.frames.int() - reference.frames.int()).abs().max().item()
    assert difference == 0, f"OpenCV differs from PyAV by up to {difference} levels on jobs.mp4"


@needs_av
@needs_cv2
def test_without_pyav_auto_decodes_with_opencv(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = write_video(tmp_path / "clip.mp4", 40, width=64, height=48)
    expected = save_frames_file(load_video(path, 8, decoder="pyav"), tmp_path / "pyav.npz")
    done = run_python(f"""
import sys
sys.modules["av"] = None  # PyAV is not installed
import torch
import earlytom.runtime
from earlytom.models.video import load_video
video, reference = load_video({str(path)!r}, 8), load_video({str(expected)!r}, 8)
assert video.decoder == "opencv" and reference.decoder == "pyav", (video.decoder, reference.decoder)
assert video.indices == reference.indices and torch.equal(video.frames, reference.frames)
print("ok")
""")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_importing_the_runtime_imports_no_decoder() -> None:
    done = run_python(
        "import sys; import earlytom.models.video, earlytom.runtime; "
        "print(sorted(m for m in ('av', 'cv2') if m in sys.modules))"
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_no_decoder_is_one_missing_dependency_line(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 64)  # never opened: the missing decoder is found first
    done = run_python(f"""
import sys
sys.modules["av"] = sys.modules["cv2"] = None  # neither decoder installed
from earlytom.errors import MissingDependencyError
from earlytom.models.video import load_video
for decoder in ("auto", "pyav", "opencv"):
    try:
        load_video({str(path)!r}, 4, decoder=decoder)
    except MissingDependencyError as exc:
        print(exc)
""")
    assert done.returncode == 0, done.stderr
    auto, pyav, opencv = done.stdout.strip().splitlines()
    assert auto == (
        "decoding a video needs PyAV or OpenCV: pip install av (or opencv-python-headless), "
        "or pass a .npz frames file"
    )
    assert pyav.endswith("pip install av") and opencv.endswith("pip install opencv-python-headless")


# --- user errors --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_video_error(tmp_path / "nope.mp4", "no such file")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "videos.mp4"
    folder.mkdir()
    _assert_one_line_video_error(folder, "directory")


@pytest.mark.parametrize("decoder", DECODERS)
def test_text_file_named_mp4(tmp_path: Path, decoder: str) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes\nnot a video at all\n")
    _assert_one_line_video_error(path, "not a video file", decoder=decoder)


@pytest.mark.parametrize("decoder", DECODERS)
def test_text_file_opened_as_subtitles(tmp_path: Path, decoder: str) -> None:
    # FFmpeg probes some text as a format with no video (e.g. "lrc" lyrics): still one clear line.
    path = tmp_path / "notes.txt"
    path.write_text("[00:01.00] hello\n[00:02.00] world\n")
    _assert_one_line_video_error(path, decoder=decoder)


@needs_av
def test_audio_only(tmp_path: Path) -> None:
    _assert_one_line_video_error(
        write_audio(tmp_path / "song.mkv"), "no video stream", "audio", decoder="pyav"
    )
    if cv2 is not None:  # OpenCV gives no reason: the message says what to pass
        _assert_one_line_video_error(tmp_path / "song.mkv", "not a video file", decoder="opencv")


@pytest.mark.parametrize("decoder", DECODERS)
def test_video_stream_without_frames(tmp_path: Path, decoder: str) -> None:
    # AVI keeps an empty video stream; MP4 drops an empty track on read (-> "no video stream").
    _assert_one_line_video_error(
        write_video(tmp_path / "empty.avi", 0), "no decodable frame", decoder=decoder
    )
    _assert_one_line_video_error(write_video(tmp_path / "empty.mp4", 0), decoder=decoder)


@needs_av
def test_errors_chain_the_pyav_cause(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError) as info:
        load_video(path, decoder="pyav")
    assert isinstance(info.value.__cause__, av.FFmpegError | OSError | ValueError | EOFError)


# --- the real clip ------------------------------------------------------------------------------


@needs_jobs
@pytest.mark.parametrize(
    "decoder", [pytest.param("pyav", marks=needs_av), pytest.param("opencv", marks=needs_cv2)]
)
def test_real_clip(decoder: str) -> None:
    video = load_video(JOBS, num_frames=32, decoder=decoder)
    assert video.total_frames == 524
    assert video.frames.shape == (32, 1024, 576, 3)  # portrait: 576 wide x 1024 high
    assert video.frames.dtype == torch.uint8
    assert video.indices == tuple(sample_indices(524, 32))
    assert video.fps == pytest.approx(30.0)
    assert video.frames.float().std() > 10  # real content, not blank frames


# --- frames files -------------------------------------------------------------------------------


def synthetic(total: int, num_frames: int, *, fps: float | None = 25.0) -> DecodedVideo:
    """Frames as a decoder would return them, frame i coloured (i % 256, i // 256, 128); no decoder."""
    indices = sample_indices(total, num_frames)
    frames = torch.full((num_frames, 24, 40, 3), 128, dtype=torch.uint8)  # (T, H, W, 3)
    for pos, index in enumerate(indices):
        frames[pos, ..., 0], frames[pos, ..., 1] = index % 256, index // 256
    return DecodedVideo(frames=frames, indices=tuple(indices), total_frames=total, fps=fps,
                        path=Path("clip.mp4"), decoder="pyav", source="clip.mp4")  # fmt: skip


def test_frames_file_round_trip(tmp_path: Path) -> None:
    from earlytom.models.frames_file import load_frames_file, save_frames_file

    video = synthetic(524, 32)
    path = save_frames_file(video, tmp_path / "jobs-32.npz")
    assert path == tmp_path / "jobs-32.npz" and [p.name for p in tmp_path.iterdir()] == ["jobs-32.npz"]
    for loaded in (load_frames_file(path), load_video(path, 32), load_video(str(path))):
        assert torch.equal(loaded.frames, video.frames) and loaded.frames.dtype == torch.uint8
        assert loaded.indices == video.indices and loaded.total_frames == 524 and loaded.fps == 25.0
        assert loaded.path == path and loaded.source == "clip.mp4" and loaded.decoder == "pyav"


def test_frames_file_keeps_an_unknown_fps(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = save_frames_file(synthetic(10, 4, fps=None), tmp_path / "f.npz")
    assert load_video(path, 4).fps is None


def test_frames_file_gives_a_subset_it_holds(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = save_frames_file(synthetic(40, 40), tmp_path / "all.npz")
    subset = load_video(path, 8)
    assert subset.indices == tuple(sample_indices(40, 8))
    assert subset.frames[:, 0, 0, 0].tolist() == list(subset.indices)  # red encodes the index


def test_frames_file_refuses_frames_it_lacks(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = save_frames_file(synthetic(524, 8), tmp_path / "eight.npz")
    _assert_one_line_video_error(path, "holds 8 sampled frames, not the 4 asked for")


def test_short_video_from_a_frames_file_warns(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = save_frames_file(synthetic(10, 32), tmp_path / "short.npz")
    with pytest.warns(ShortVideoWarning, match="only 10 frames but 32"):
        assert load_video(path, 32).frames.shape == (32, 24, 40, 3)


@pytest.mark.parametrize("content", ["text", "zip without our keys", "float frames"])
def test_bad_frames_file_is_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.npz"
    if content == "text":
        path.write_text("not a zip\n")
    elif content == "zip without our keys":
        np.savez(path, x=np.zeros(3))
    else:
        from earlytom.models.frames_file import save_frames_file

        save_frames_file(synthetic(10, 4), path)
        data = dict(np.load(path))
        np.savez_compressed(path, **(data | {"frames": data["frames"].astype(np.float32)}))
    message = _assert_one_line_video_error(path)
    assert "frames file" in message or "uint8" in message


def test_frames_file_name_must_end_in_npz(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    with pytest.raises(VideoError, match=r"named \*\.npz"):
        save_frames_file(synthetic(10, 4), tmp_path / "frames.npy")


def test_frames_file_loads_without_any_decoder(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    path = save_frames_file(synthetic(524, 32), tmp_path / "jobs-32.npz")
    done = run_python(f"""
import sys
sys.modules["av"] = sys.modules["cv2"] = None
from earlytom.models.video import load_video
video = load_video({str(path)!r}, 32)
print(tuple(video.frames.shape), video.total_frames, video.source)
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(32, 24, 40, 3) 524 clip.mp4"


@needs_av
@needs_jobs
def test_frames_file_of_jobs_is_small(tmp_path: Path) -> None:
    from earlytom.models.frames_file import save_frames_file

    video = load_video(JOBS, 32)
    path = save_frames_file(video, tmp_path / "jobs-32.npz")
    assert path.stat().st_size < 16e6  # carried to a GPU machine: 11 MB measured
    assert torch.equal(load_video(path, 32).frames, video.frames)

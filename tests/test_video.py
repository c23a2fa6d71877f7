"""Tests for earlytom.models.video: frame sampling, decoding and user-facing errors.

Videos are generated with PyAV in tmp_path. Frame i is a flat colour that encodes i
(R = 16 * (i % 16) + 8, G = 16 * (i // 16) + 8), so the index of a decoded frame can be read back
from its mean colour despite compression (errors stay within ~3 levels, the step is 16).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from videos import write_video

from earlytom.errors import InputError, VideoError
from earlytom.models import video as video_mod
from earlytom.models.video import DecodedVideo, ShortVideoWarning, load_video, sample_indices

JOBS = Path(__file__).resolve().parents[2] / "shared/data/jobs.mp4"


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


def _assert_one_line_video_error(path: Path, *fragments: str) -> str:
    with pytest.raises(VideoError) as info:
        load_video(path, num_frames=4)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert path.name in message
    for fragment in fragments:
        assert fragment in message
    return message


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


# --- load_video ---------------------------------------------------------------------------------


def test_load_video_samples_the_right_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 40, width=96, height=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortVideoWarning)
        video = load_video(str(path), num_frames=8)
    assert isinstance(video, DecodedVideo)
    assert video.frames.shape == (8, 64, 96, 3)
    assert video.frames.dtype == torch.uint8 and video.frames.device.type == "cpu"
    assert video.indices == tuple(sample_indices(40, 8))
    assert video.total_frames == 40
    assert video.fps == pytest.approx(25.0)
    assert video.path == path
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("num_frames", [1, 32, 40])
def test_load_video_frame_counts(tmp_path: Path, num_frames: int) -> None:
    path = write_video(tmp_path / "clip.mkv", 40, width=64, height=48)
    video = load_video(path, num_frames=num_frames)
    assert video.frames.shape == (num_frames, 48, 64, 3)
    assert video.indices == tuple(sample_indices(40, num_frames))
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


def test_short_video_warns_and_repeats(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", 10, width=64, height=48)
    with pytest.warns(ShortVideoWarning) as record:
        video = load_video(path, num_frames=32)
    message = str(record[0].message)
    assert "\n" not in message and "10" in message and "32" in message
    assert video.frames.shape == (32, 48, 64, 3)
    assert video.total_frames == 10
    assert video.indices == tuple(sample_indices(10, 32))
    assert len(set(video.indices)) == 10  # every frame used, several repeated
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


@pytest.mark.parametrize("wrong_count", [0, 30, 45])
def test_packet_count_mismatch_resamples_from_decoded_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong_count: int
) -> None:
    # Simulate a container whose packet count disagrees with the decodable frames.
    path = write_video(tmp_path / "clip.mp4", 40, width=64, height=48)
    monkeypatch.setattr(video_mod, "_probe", lambda _path: (wrong_count, 25.0))
    video = load_video(path, num_frames=8)
    assert video.total_frames == 40
    assert video.indices == tuple(sample_indices(40, 8))
    assert [_frame_index(f) for f in video.frames] == list(video.indices)


def test_truncated_video_keeps_decodable_frames(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.mkv", 60, width=64, height=48)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    video = load_video(cut, num_frames=8)
    assert 0 < video.total_frames < 60
    assert video.frames.shape == (8, 48, 64, 3)
    assert video.indices == tuple(sample_indices(video.total_frames, 8))


@pytest.mark.parametrize("num_frames", [0, -3])
def test_bad_num_frames(tmp_path: Path, num_frames: int) -> None:
    path = write_video(tmp_path / "clip.mp4", 5)
    with pytest.raises(InputError) as info:
        load_video(path, num_frames=num_frames)
    assert "\n" not in str(info.value)


# --- user errors --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_video_error(tmp_path / "nope.mp4", "no such file")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "videos.mp4"
    folder.mkdir()
    _assert_one_line_video_error(folder, "directory")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes\nnot a video at all\n")
    _assert_one_line_video_error(path, "not a video file")


def test_text_file_opened_as_subtitles(tmp_path: Path) -> None:
    # FFmpeg probes some text as a format with no video (e.g. "lrc" lyrics): still one clear line.
    path = tmp_path / "notes.txt"
    path.write_text("[00:01.00] hello\n[00:02.00] world\n")
    _assert_one_line_video_error(path)


def test_audio_only(tmp_path: Path) -> None:
    _assert_one_line_video_error(write_audio(tmp_path / "song.mkv"), "no video stream", "audio")


def test_video_stream_without_frames(tmp_path: Path) -> None:
    # AVI keeps an empty video stream; MP4 drops an empty track on read (-> "no video stream").
    _assert_one_line_video_error(write_video(tmp_path / "empty.avi", 0), "no decodable frame")
    _assert_one_line_video_error(write_video(tmp_path / "empty.mp4", 0))


def test_errors_chain_the_pyav_cause(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError) as info:
        load_video(path)
    assert isinstance(info.value.__cause__, av.FFmpegError | OSError | ValueError | EOFError)


# --- the real clip ------------------------------------------------------------------------------


@pytest.mark.skipif(not JOBS.is_file(), reason=f"sample clip not found at {JOBS}")
def test_real_clip() -> None:
    video = load_video(JOBS, num_frames=32)
    assert video.total_frames == 524
    assert video.frames.shape == (32, 1024, 576, 3)  # portrait: 576 wide x 1024 high
    assert video.frames.dtype == torch.uint8
    assert video.indices == tuple(sample_indices(524, 32))
    assert video.fps == pytest.approx(30.0)
    assert video.frames.float().std() > 10  # real content, not blank frames

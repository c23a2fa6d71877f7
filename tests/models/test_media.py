"""Bad media refused before it passes as good: still images (whatever their name), truncated or
partly undecodable videos (reported with both counts, accepted knowingly with allow_partial), more
frames than the documented maximum or the memory holds. Every input is written by the test."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from earlytom.errors import InputError, VideoError
from earlytom.models import media
from earlytom.models.context import MAX_FRAMES
from earlytom.models.video import PartialVideoWarning, load_video

try:
    import cv2
except ImportError:
    cv2 = None
av = pytest.importorskip("av", reason="the test clips are written with PyAV")
from videos import write_video  # noqa: E402 (needs PyAV)

DECODERS = ["pyav", pytest.param("opencv", marks=pytest.mark.skipif(cv2 is None, reason="no OpenCV"))]


def write_image(path: Path, kind: str = "PNG") -> Path:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=kind)
    path.write_bytes(buffer.getvalue())
    return path


def truncated_mp4(folder: Path, keep: float = 0.4) -> Path:
    """The first `keep` of an MP4 whose index comes first: it opens, and its tail is missing."""
    full = write_video(folder / "full.mp4", 60, width=64, height=48, faststart=True)
    cut = folder / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * keep)])
    return cut


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("name", "kind"), [("still.png", "PNG"), ("renamed.mp4", "PNG"),
                                            ("photo.jpg", "JPEG"), ("photo.mkv", "JPEG"),
                                            ("scan.avi", "BMP"), ("scan.mov", "TIFF"),
                                            ("web.webm", "WEBP")])  # fmt: skip
def test_a_still_image_is_refused_whatever_its_name(
    tmp_path: Path, decoder: str, name: str, kind: str
) -> None:
    path = write_image(tmp_path / name, kind)
    with pytest.raises(VideoError) as info:
        load_video(path, 8, decoder=decoder)
    message = str(info.value)
    assert "\n" not in message and name in message
    assert f"is a still image ({'WebP' if kind == 'WEBP' else kind}), not a video" in message


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_truncated_video_is_reported_with_both_counts(tmp_path: Path, decoder: str) -> None:
    cut = truncated_mp4(tmp_path)
    with pytest.raises(VideoError) as info:
        load_video(cut, 8, decoder=decoder)
    message = str(info.value)
    assert "\n" not in message and "cut.mp4' is truncated or partly undecodable" in message
    decoded = int(message.split(": ")[1].split(" of the ")[0])
    assert 0 < decoded < 60 and "of the 60 frames its container declares decode" in message
    assert "--allow-partial-video" in message


@pytest.mark.parametrize("decoder", DECODERS)
def test_allow_partial_samples_the_frames_that_decode_and_warns(tmp_path: Path, decoder: str) -> None:
    cut = truncated_mp4(tmp_path)
    with pytest.warns(PartialVideoWarning, match="of the 60 frames") as record:
        video = load_video(cut, 8, decoder=decoder, allow_partial=True)
    assert "\n" not in str(record[0].message)
    assert 0 < video.total_frames < 60 and video.declared_frames == 60
    assert video.frames.shape == (8, 48, 64, 3) and max(video.indices) == video.total_frames - 1


def test_both_decoders_count_a_truncated_video_alike(tmp_path: Path) -> None:
    if cv2 is None:
        pytest.skip("no OpenCV")
    cut = truncated_mp4(tmp_path, keep=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialVideoWarning)
        pyav, opencv = (load_video(cut, 4, decoder=d, allow_partial=True) for d in ("pyav", "opencv"))
    assert (pyav.total_frames, pyav.declared_frames) == (opencv.total_frames, opencv.declared_frames)


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_whole_video_is_not_partial(tmp_path: Path, decoder: str) -> None:
    for name in ("whole.mp4", "whole.mkv", "whole.avi"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", PartialVideoWarning)
            video = load_video(write_video(tmp_path / name, 33, width=64, height=48), 8, decoder=decoder)
        assert video.total_frames == 33 and video.declared_frames == 33


def test_partial_means_more_missing_than_rounding() -> None:
    assert media.declared_count(0, 1.32, 25.0) == 33 and media.declared_count(40, 9.0, 25.0) == 40
    assert media.declared_count(0, None, 25.0) == 0
    assert not media.is_partial(32, 33) and not media.is_partial(514, 524) and media.is_partial(177, 524)
    assert not media.is_partial(5, 0)  # nothing declared: nothing to compare with


def test_more_frames_than_the_maximum_are_refused_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=f"frames={MAX_FRAMES + 1} is out of range: sample at most {MAX_FRAMES}"
    ):
        load_video(tmp_path / "never-opened.mp4", MAX_FRAMES + 1)


def test_frames_that_do_not_fit_in_memory_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = write_video(tmp_path / "clip.mp4", 10, width=640, height=360)
    monkeypatch.setattr(media, "available_memory", lambda: 500_000_000)  # 0.5 GB
    with pytest.raises(InputError) as info:
        load_video(clip, 1000)
    message = str(info.value)
    assert (
        "frames=1000 of" in message and "(640×360)" in message and "0.5 GB of memory is available" in message
    )
    assert load_video(clip, 8).frames.shape[0] == 8  # a request that fits still runs

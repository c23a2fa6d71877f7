"""`earlytom profile` writes only into its own output folder, and only when it can finish.

The artifact folder is a copy of the session's export (conftest: fp16_dir); the machine's timing
means (a GPU, trtexec / tensorrt_rtx on PATH) are set by monkeypatching, so every case runs the
same way with or without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from videos import write_video

from earlytom.cli.main import cli
from earlytom.engines.profile import default_profile_folder

pytestmark = pytest.mark.slow


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def folder(fp16_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "engines" / "tiny"
    shutil.copytree(fp16_dir, copy)
    return copy


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 4)


def no_timing_means(monkeypatch: pytest.MonkeyPatch, *, tool: str | None = None, gpu: bool = False) -> None:
    import torch

    monkeypatch.setattr("earlytom.engines.profile.shutil.which", lambda _: tool)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)


def profile(*args: str):
    return CliRunner().invoke(cli, ["profile", *args], catch_exceptions=False)


def test_without_a_gpu_or_tool_nothing_is_written(
    folder: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_timing_means(monkeypatch)
    before = listing(folder.parent)
    result = profile(str(folder), "--video", str(clip), "--frames", "4")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: timing the plans needs tensorrt_rtx on PATH or an NVIDIA GPU, and this machine has "
        "neither: use --print-commands to get the tensorrt_rtx commands and run them on the target machine"
    )
    assert listing(folder.parent) == before, "neither the artifact folder nor a profile folder was written"


def test_a_failure_part_way_removes_what_it_wrote(
    folder: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_timing_means(monkeypatch, tool="/usr/bin/tensorrt_rtx")  # the tool is "there" but fails

    def failing(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="[E] no CUDA device")

    monkeypatch.setattr("earlytom.engines.profile.subprocess.run", failing)
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for out in (fresh, kept):
        result = profile(str(folder), "--video", str(clip), "--frames", "4", "--out", str(out))
        assert result.exit_code == 1 and "no CUDA device" in result.stderr, result.stderr
    assert not fresh.exists(), "a folder the run created is removed"
    assert listing(kept) == ["notes.txt"], "a folder that was there keeps only what it had"


def test_print_commands_writes_its_inputs_beside_the_folder_only(
    folder: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_timing_means(monkeypatch)
    before = listing(folder)
    result = profile(str(folder), "--video", str(clip), "--frames", "4", "--print-commands")
    assert result.exit_code == 0, result.stderr
    out = default_profile_folder(folder)
    assert out == folder.parent / "tiny-profile" and listing(folder) == before
    assert listing(out) == ["inputs"] + [
        f"inputs/select.{n}.bin" for n in ("budget", "frame_kind", "scores", "token_slots")
    ]
    assert f"--loadInputs=scores:{out / 'inputs' / 'select.scores.bin'}" in result.stdout


def test_a_truncated_video_needs_the_flag_here_too(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = write_video(tmp_path / "full.mp4", 60, width=64, height=48, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.4)])
    no_timing_means(monkeypatch)
    refused = profile(str(folder), "--video", str(cut), "--frames", "4", "--print-commands")
    assert refused.exit_code == 1 and "--allow-partial-video" in refused.stderr, refused.stderr
    accepted = profile(str(folder), "--video", str(cut), "--frames", "4", "--print-commands",
                       "--allow-partial-video")  # fmt: skip
    assert accepted.exit_code == 0, accepted.stderr

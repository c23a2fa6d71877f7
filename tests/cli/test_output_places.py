"""An --out that cannot be written is found before any work: export, bench and profile.

Each case must be one `error:` line naming --out, exit code 1, within a few seconds, and before
the model loads or the exported segments run (those are made to fail the test).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from videos import write_video

from earlytom.cli.bench import bench
from earlytom.cli.export import export
from earlytom.cli.profile import profile

PLACES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "under a regular file": (
        lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "out",
        "is inside {tmp}/file, which is a file",
    ),
    "a regular file": (
        lambda tmp: (tmp / "file").write_text("x") and tmp / "file",
        "is a file, not a folder",
    ),
}
if os.geteuid() != 0:  # root writes into read-only folders
    PLACES["under a read-only folder"] = (
        lambda tmp: (tmp / "locked").mkdir(mode=0o555) or tmp / "locked" / "out",
        "cannot be written: {tmp}/locked refuses new files",
    )


def block_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr("earlytom.exporter.export.load_vision_side", refuse)
    monkeypatch.setattr("earlytom.models.loading.load_model", refuse)
    monkeypatch.setattr("earlytom.engines.profile.record_shapes", refuse)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 4)


def command_lines(clip: Path, folder: Path | None) -> dict[str, tuple[Any, list[str]]]:
    found = {
        "export": (export, ["--model", "tiny", "--skip-build"]),
        "bench": (bench, ["--model", "tiny", "--video", str(clip), "--frames", "2", "--runs", "1"]),
    }
    if folder is not None:
        found["profile"] = (profile, [str(folder), "--video", str(clip), "--frames", "2", "--print-commands"])
    return found


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("name", ["export", "bench", "profile"])
def test_an_unwritable_out_fails_fast_with_one_line(
    name: str,
    place: str,
    tmp_path: Path,
    clip: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = None
    if name == "profile":
        folder = tmp_path / "engines" / "tiny"
        shutil.copytree(request.getfixturevalue("fp16_dir"), folder)
    block_work(monkeypatch)
    command, args = command_lines(clip, folder)[name]
    make, message = PLACES[place]
    out = make(tmp_path)
    start = time.monotonic()
    result = CliRunner().invoke(command, [*args, "--out", str(out)], catch_exceptions=False)
    assert time.monotonic() - start < 5, "the check comes before any expensive work"
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: --out {out} "), result.stderr
    assert message.format(tmp=tmp_path) in errors[0]
    if folder is not None:
        assert not (folder.parent / "tiny-profile").exists() and "inputs" not in os.listdir(folder)
    if (tmp_path / "locked").exists():
        (tmp_path / "locked").chmod(0o755)  # so that pytest can remove it

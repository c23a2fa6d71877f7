"""The export job's staging folder: signals remove it, a killed job's is removed by the next one.

`earlytom-export` runs in a subprocess with the smallest setting (tiny, ONNX only, 2 validation
frames); the signal is sent as soon as its staging folder `.tiny.partial-*` appears.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from earlytom.jobs import Interrupted, staged_output

REPO = Path(__file__).resolve().parents[1]


def start_export(out: Path, tiny_cache: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "earlytom.cli.export", "--model", "tiny", "--out", str(out),
               "--skip-build", "--validation-frames", "2", "--token-select", "onnx"]  # fmt: skip
    env = {**os.environ, "XDG_CACHE_HOME": str(tiny_cache.parent)}
    return subprocess.Popen(
        command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def staging(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.partial-*"))


def wait_for_staging(process: subprocess.Popen[str], out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not staging(out):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export never created its staging folder"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_export_leaves_nothing(signum: int, tiny_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines" / "tiny"
    process = start_export(out, tiny_cache)
    wait_for_staging(process, out)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == f"error: export stopped by {name}: nothing was written to {out}"
    assert "Traceback" not in stderr
    assert not out.exists() and not staging(out), "no staging folder (and no output) is left"


@pytest.mark.slow
def test_a_killed_export_is_cleaned_up_by_the_next(tiny_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    process = start_export(out, tiny_cache)
    wait_for_staging(process, out)
    process.kill()  # SIGKILL: no handler runs, the staging folder stays
    process.communicate(timeout=60)
    (stale,) = staging(out)
    said: list[str] = []
    with staged_output(out, force=False, progress=said.append) as stage:
        (stage / "manifest.json").write_text("{}")
    assert said == [f"removed {stale}, left behind by an export that was killed"]
    assert not staging(out) and (out / "manifest.json").exists()


def test_stale_staging_folders_go_and_a_live_one_stays(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    stale, live = tmp_path / ".tiny.partial-dead", tmp_path / ".tiny.partial-live"
    stale.mkdir()
    (stale / "segment0.onnx").write_bytes(b"half")
    live.mkdir()
    held = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a running export holds its own
    said: list[str] = []
    try:
        with staged_output(out, force=False, progress=said.append):
            pass
    finally:
        os.close(held)
    assert said == [
        f"removed {stale}, left behind by an export that was killed",
        f"left {live} alone: an export to {out} is still writing it",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.partial-live", "tiny"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_inside_the_block_removes_the_stage(signum: int, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    before = signal.getsignal(signum)
    stopped = pytest.raises(Interrupted, match=f"stopped by {signal.Signals(signum).name}")
    with stopped, staged_output(out, force=False) as stage:
        (stage / "half.onnx").write_bytes(b"half")
        os.kill(os.getpid(), signum)
        time.sleep(10)  # the handler raises here
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signum) == before


def test_a_signal_while_the_stage_is_made_still_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held to the end of the step, whichever thread the signal reached, then raised."""
    import earlytom.jobs as jobs

    make = jobs._locked_stage

    def signalled(out: Path) -> tuple[Path, int]:
        made = make(out)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs now and holds the signal back
        return made

    monkeypatch.setattr(jobs, "_locked_stage", signalled)
    with pytest.raises(Interrupted), staged_output(tmp_path / "tiny", force=False):
        raise AssertionError("the block must not start")
    assert list(tmp_path.iterdir()) == []


def test_the_output_folder_is_not_private(tmp_path: Path) -> None:
    with staged_output(tmp_path / "tiny", force=False):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "tiny").stat().st_mode & 0o777 == 0o777 & ~mask

"""The README's two commands are the real ones: the first runs here (in a folder with no
../shared beside it, as in a fresh clone), the second is what CI calls."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None and text.index("```bash") < text.index("## "), "commands come first"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_two_commands_setup_then_main_job_and_tests() -> None:
    main_job, tests = readme_commands()
    setup, export, run = (part.strip() for part in main_job.split("&&"))
    assert setup == "bash scripts/setup.sh"
    assert export.startswith("earlytom-export --model tiny --out engines/tiny")
    assert run.startswith("earlytom run --model tiny --artifacts engines/tiny")
    assert tests == "bash scripts/test.sh"
    assert "../shared" not in main_job and "--video demo" in run  # the project's own clip
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow
def test_main_job_command_runs(tiny_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tiny_cache.parent)}
    clone = tmp_path / "clone"  # a working folder with nothing beside it
    clone.mkdir()
    assert not (clone.parent / "shared").exists()
    for command in readme_commands()[0].split("&&")[1:]:
        # The README's commands verbatim, except that the artifacts go to a temporary folder.
        argv = [str(tmp_path / "tiny") if arg == "engines/tiny" else arg for arg in shlex.split(command)]
        exe = Path(sys.executable).with_name(argv[0])
        argv[0] = str(exe) if exe.exists() else argv[0]
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "tiny" / "select.plan").exists()
    assert "vision path in onnxruntime" in done.stdout
    frames = re.search(
        r"^frames\s+32 → (\d+) \(layer 10\) → (\d+) \(layer 21\) → (\d+) \(layer 23\)", done.stdout, re.M
    )
    assert frames is not None, done.stdout
    assert int(frames.group(3)) < 32
    tokens = re.search(r"^tokens\s+6273 → (\d+) visual tokens", done.stdout, re.M)
    assert tokens is not None and abs(int(tokens.group(1)) - 628.2) < 0.05 * 628

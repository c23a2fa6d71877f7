"""benchmarks/gpu_suite.py end to end on tiny: every step recorded, the table printed last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SUITE = REPO / "benchmarks" / "gpu_suite.py"


def run_suite(tiny_cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"XDG_CACHE_HOME": str(tiny_cache.parent), "HF_HUB_CACHE": str(tiny_cache / "no-hub")}
    return subprocess.run(
        [sys.executable, str(SUITE), *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.slow
def test_suite_on_tiny_records_every_step(tiny_cache: Path, jobs_mp4: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    done = run_suite(tiny_cache, "--out", str(tmp_path), "--model", "tiny", "--video", str(jobs_mp4),
                     "--frames", "4", "--runs", "2", "--warmup", "1", "--retention", "0.1",
                     "--gpu-tests", "tests/test_kernel_gpu.py")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (suite_path,) = tmp_path.glob("suite-*.json")
    suite = json.loads(suite_path.read_text())
    assert {p.name for p in tmp_path.iterdir()} >= {*suite["bench_files"], suite_path.name, "gpu-tests.xml"}

    assert [row["label"] for row in suite["summary"]] == ["baseline", "10%", "post 10%"]
    assert [row["method"] for row in suite["summary"]] == ["stock", "earlytom", "post-encoder"]
    base, earlytom, post = suite["summary"]
    assert base["speedup"] == 1.0 and base["frames_per_stage"] == [4]
    assert earlytom["frames_per_stage"][0] == 4 and len(earlytom["frames_per_stage"]) == 4
    assert post["frames_per_stage"] == [4] and post["visual_tokens"] == 4 * 20 + 1
    for row in suite["summary"]:
        assert set(row["tflops"]) == {"paper", "per-frame", "paper, no prompt"}
        assert row["tflops"]["paper, no prompt"] <= row["tflops"]["paper"]
    assert suite["bench"]["runs"] == 2 and suite["bench"]["warmup"] == 1
    assert suite["paper"]["speedup"] == 2.65 and suite["random_weights"] is True

    if not suite["gpu_tests"].get("counts"):
        pytest.fail(f"pytest -m gpu left no counts: {suite['gpu_tests']}")
    if suite["device"].startswith("NVIDIA"):
        return  # the rest checks what a machine without a GPU records
    # pytest exits 5 when the only module skips itself at import (no CUDA): nothing failed.
    assert suite["gpu_tests"]["counts"]["skipped"] >= 1 and suite["gpu_tests"]["returncode"] in (0, 5)
    assert suite["token_select_bench"] == {"skipped": "needs a CUDA device"}
    assert [p["label"] for p in suite["profile"]] == ["baseline", "10%"]
    assert all(p["clock"] == "cpu" and p["top_ops"] for p in suite["profile"])
    last = done.stdout.strip().splitlines()
    assert last[-1] == "TokenSelect: not run (needs a CUDA device)"
    assert last[-2] == "GPU tests: 0 passed, 1 skipped, 0 failed"
    assert any(line.startswith("post 10%") for line in last)


def test_bad_video_is_one_line(tiny_cache: Path, tmp_path: Path) -> None:
    done = run_suite(tiny_cache, "--out", str(tmp_path), "--model", "tiny", "--video", "no/such.mp4",
                     "--skip-tests")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "no/such.mp4" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("suite-*.json"))


def test_bad_retention_fails_before_any_work(tiny_cache: Path, tmp_path: Path) -> None:
    done = run_suite(tiny_cache, "--out", str(tmp_path / "out"), "--retention", "0.3")
    assert done.returncode == 1 and "has no setting for retention=0.3" in done.stderr
    assert not (tmp_path / "out").exists()

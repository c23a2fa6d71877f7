"""benchmarks/gpu_suite.py end to end on tiny: every step recorded as it finishes, the table printed last.

Also its parts on their own: JUnit counts with collection errors apart (from real pytest runs), the
step record (a step that raises, a run stopped by SIGTERM), frames files as --video, and
token_select_bench.py without a kernel library.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import JOBS_MP4, REPO

SUITE = REPO / "benchmarks" / "gpu_suite.py"


def run_suite(tiny_cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SUITE), *args], cwd=REPO, env=suite_env(tiny_cache),
                          capture_output=True, text=True, check=False)  # fmt: skip


def suite_env(tiny_cache: Path) -> dict[str, str]:
    # The project importable as on a GPU machine where it is not installed.
    return os.environ | {"XDG_CACHE_HOME": str(tiny_cache.parent), "HF_HUB_CACHE": str(tiny_cache / "no-hub"),
                         "PYTHONPATH": str(REPO)}  # fmt: skip


@pytest.fixture(scope="module")
def suite() -> Any:
    """benchmarks/gpu_suite.py as a module (it imports its sibling suite_report)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("gpu_suite")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.slow
def test_suite_on_tiny_records_every_step(tiny_cache: Path, jobs_mp4: Path, fp32_dir: Path,
                                          tmp_path: Path) -> None:  # fmt: skip
    """The whole suite on tiny, with the session's fp32 export as the carried artifact folder."""
    pytest.importorskip("matplotlib")
    frames = tmp_path / "jobs-4.npz"
    made = run_suite(tiny_cache, "--video", str(jobs_mp4), "--frames", "4", "--write-frames", str(frames))
    assert made.returncode == 0 and frames.is_file() and "wrote" in made.stdout, made.stderr
    out = tmp_path / "out"
    done = run_suite(tiny_cache, "--out", str(out), "--model", "tiny", "--video", str(frames),
                     "--frames", "4", "--runs", "2", "--warmup", "1", "--retention", "0.1",
                     "--gpu-tests", "tests/trt_plugins/test_kernel_gpu.py", "--artifacts", str(fp32_dir),
                     "--cache-dir", str(tiny_cache), "--max-new-tokens", "3",
                     "--label", "plumbing")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (suite_path,) = out.glob("suite-*.json")
    assert suite_path.name.startswith("suite-plumbing-") and suite_path.name.endswith(".json")
    suite = json.loads(suite_path.read_text())
    assert {p.name for p in out.iterdir()} >= {
        *suite["bench_files"],
        suite_path.name,
        "plumbing-gpu-tests.xml",
    }
    assert all(name.startswith("plumbing-") for name in suite["bench_files"])
    assert list(suite["steps"]) == ["gpu_tests", "token_select_bench", "artifact_path", "model_build",
                                    "bench", "profile"]  # fmt: skip
    assert suite["video"]["source"] == "jobs.mp4" and suite["video"]["total_frames"] == 524

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

    artifact = suite["artifact_path"]
    assert suite["steps"]["artifact_path"]["status"] == "ok"
    assert set(artifact["runs"]) == {"onnxruntime", "torch"}
    for run in artifact["runs"].values():
        assert run["frames_per_stage"][0] == 4 and len(run["token_ids"]) <= 3 and run["ttft_ms"]["total"] > 0
    ort, ref = artifact["runs"]["onnxruntime"], artifact["runs"]["torch"]
    keys = ("frames_per_stage", "visual_tokens_after", "token_ids")
    assert artifact["agree"] == {key: ort[key] == ref[key] for key in keys}

    if not suite["gpu_tests"].get("counts"):
        pytest.fail(f"pytest -m gpu left no counts: {suite['gpu_tests']}")
    last = done.stdout.strip().splitlines()
    assert last[-1].startswith("steps: gpu_tests ok · token_select_bench ")
    assert last[-2].startswith("artifact path: tiny on ") and "onnxruntime / torch: frames 4" in last[-2]
    if suite["device"].startswith("NVIDIA"):
        return  # the rest checks what a machine without a GPU records
    # pytest exits 5 when the only module skips itself at import (no CUDA): nothing failed.
    assert suite["gpu_tests"]["counts"]["skipped"] >= 1 and suite["gpu_tests"]["returncode"] in (0, 5)
    assert suite["steps"]["token_select_bench"] == {"status": "skipped", "reason": "needs a CUDA device",
                                                    "seconds": 0.0}  # fmt: skip
    assert [p["label"] for p in suite["profile"]["settings"]] == ["baseline", "10%"]
    assert all(p["clock"] == "cpu" and p["top_ops"] for p in suite["profile"]["settings"])
    assert artifact["all_agree"], artifact["agree"]  # fp32 on a CPU: the two backends agree exactly
    assert last[-3] == "TokenSelect: not run (needs a CUDA device)"
    assert last[-4] == "GPU tests: 0 passed, 1 skipped, 0 failed, 0 errors"
    assert any(line.startswith("post 10%") for line in last)


def write_tests(folder: Path) -> Path:
    """A passing, a skipping and a failing GPU test, a CPU test, and a module that cannot import."""
    folder.mkdir()
    (folder / "test_gpu_things.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.gpu\n\n\ndef test_passes():\n    pass\n\n\n"
        "def test_skips():\n    pytest.skip('no device')\n\n\ndef test_fails():\n    assert 1 == 2\n"
    )
    (folder / "test_cpu_things.py").write_text("def test_not_selected():\n    pass\n")
    (folder / "test_needs_optional.py").write_text("import earlytom_optional_package_not_installed  # noqa\n")
    return folder


def test_collection_errors_are_counted_apart(suite: Any, tmp_path: Path) -> None:
    tests = write_tests(tmp_path / "tests")
    with pytest.raises(suite.StepFailed) as info:
        suite.run_gpu_tests(tmp_path, [str(tests)], "x-")
    assert str(info.value) == "1 failed, 0 errors"  # a failed test fails the step; the import does not
    result = info.value.result
    assert result["counts"] == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "collection_errors": 1,
                                "passed": 1}  # fmt: skip
    (module,) = result["collection_errors"]
    assert module["module"].endswith("test_needs_optional")
    assert module["missing"] == "earlytom_optional_package_not_installed"
    assert (
        module["reason"] == "ModuleNotFoundError: No module named 'earlytom_optional_package_not_installed'"
    )
    assert (tmp_path / "x-gpu-tests.xml").is_file()
    from suite_report import format_test_counts

    assert format_test_counts(result) == (
        "1 passed, 1 skipped, 1 failed, 0 errors; 1 modules not collected: "
        f"{module['module']} (earlytom_optional_package_not_installed missing)"
    )


def test_only_collection_errors_do_not_fail_the_step(suite: Any, tmp_path: Path) -> None:
    tests = write_tests(tmp_path / "tests")
    (tests / "test_gpu_things.py").write_text(
        "import pytest\n\n\n@pytest.mark.gpu\ndef test_passes():\n    pass\n"
    )
    result = suite.run_gpu_tests(tmp_path, [str(tests)], "")
    assert result["counts"]["passed"] == 1 and result["counts"]["collection_errors"] == 1
    assert result["counts"]["errors"] == 0 and result["counts"]["failures"] == 0


def test_a_step_that_raises_keeps_the_steps_before(suite: Any, tmp_path: Path) -> None:
    path = tmp_path / "suite.json"
    record = suite.SuiteRecord(path, {"model": "tiny"})
    assert json.loads(path.read_text())["steps"]["gpu_tests"] == {"status": "pending"}
    record.run("gpu_tests", lambda: {"counts": {"passed": 3}})
    on_disk = json.loads(path.read_text())
    assert on_disk["steps"]["gpu_tests"]["status"] == "ok" and on_disk["gpu_tests"] == {
        "counts": {"passed": 3}
    }

    def broken() -> dict:
        raise RuntimeError("the kernel bench broke\nin two lines")

    record.run("token_select_bench", broken)
    record.run("artifact_path", lambda: {"skipped": "no --artifacts folder given"})
    on_disk = json.loads(path.read_text())
    assert on_disk["gpu_tests"] == {"counts": {"passed": 3}}  # the finished step is still there
    failed = on_disk["steps"]["token_select_bench"]
    assert (
        failed["status"] == "failed"
        and failed["error"] == "RuntimeError: the kernel bench broke in two lines"
    )
    assert "Traceback" in failed["traceback"]  # not a user error: where it happened is kept
    assert on_disk["steps"]["artifact_path"]["status"] == "skipped"
    assert on_disk["steps"]["bench"] == {"status": "pending"}
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


@pytest.mark.slow
def test_a_stopped_run_keeps_the_finished_steps(tiny_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from earlytom.models.frames_file import save_frames_file
    from earlytom.models.video import DecodedVideo

    frames = torch.full((2, 64, 64, 3), 90, dtype=torch.uint8)  # (T, H, W, 3)
    video = save_frames_file(
        DecodedVideo(frames, (0, 1), 2, 25.0, Path("x.mp4"), source="x.mp4"), tmp_path / "x.npz"
    )
    out = tmp_path / "out"
    command = [sys.executable, str(SUITE), "--out", str(out), "--model", "tiny", "--video", str(video),
               "--frames", "2", "--runs", "500", "--warmup", "1", "--retention", "0.1", "--skip-tests",
               "--device", "cpu"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env=suite_env(tiny_cache), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    found: list[Path] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            found = list(out.glob("suite-*.json"))
            if found and json.loads(found[0].read_text())["steps"]["bench"]["status"] == "running":
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)  # what a time limit sends
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 124, stderr
    assert "the finished steps are in the suite JSON" in stderr.strip().splitlines()[-1]
    steps = json.loads(found[0].read_text())["steps"]
    assert steps["model_build"]["status"] == "ok" and steps["gpu_tests"]["status"] == "skipped"
    assert steps["bench"]["status"] == "interrupted" and steps["profile"] == {"status": "pending"}


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


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--cache-dir", "cache", "must be the earlytom folder of a cache"),
    ("--artifacts", "nothing-here", "has no manifest.json: pass an earlytom-export folder"),
])  # fmt: skip
def test_bad_folders_fail_before_any_work(tiny_cache: Path, tmp_path: Path, option: str, value: str,
                                          expected: str) -> None:  # fmt: skip
    done = run_suite(tiny_cache, "--out", str(tmp_path / "out"), option, str(tmp_path / value))
    assert done.returncode == 1 and expected in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_token_select_bench_without_the_kernel_keeps_the_torch_timing(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    command = [sys.executable, str(REPO / "benchmarks" / "token_select_bench.py"), "--out", str(tmp_path),
               "--channels", "32", "--frames", "8", "--runs", "3", "--warmup", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.glob("token_select-*.json")
    report = json.loads(path.read_text())
    assert set(report["median_ms"]) == {"torch_ops"} and len(report["times_ms"]["torch_ops"]) == 3
    assert report["failed"] == {}
    if report["device"] == "cpu":
        assert report["skipped"] == {"kernel": "needs a CUDA device", "tensorrt_rtx": "needs a CUDA device"}
    else:  # a GPU without a kernel library in the (empty) cache
        assert report["skipped"]["kernel"].startswith("no kernel library at ")
    assert "kernel       skipped: " in done.stdout


@pytest.mark.skipif(not JOBS_MP4.is_file(), reason=f"test clip {JOBS_MP4} is not present")
def test_frames_file_written_without_pyav(tmp_path: Path) -> None:
    # A machine without PyAV: the suite starts, decodes with OpenCV and writes PyAV's pixels.
    pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
    pytest.importorskip("av", reason="PyAV is not installed: it decodes the reference pixels")
    from earlytom.models.video import load_video

    code = ("import sys, runpy; sys.modules['av'] = None; "
            f"sys.argv = ['gpu_suite.py', '--video', {str(JOBS_MP4)!r}, '--frames', '4', "
            f"'--write-frames', {str(tmp_path / 'jobs-4.npz')!r}]; "
            f"sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
            f"runpy.run_path({str(SUITE)!r}, run_name='__main__')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith(f"wrote {tmp_path / 'jobs-4.npz'}"), done.stderr
    written, reference = load_video(tmp_path / "jobs-4.npz", 4), load_video(JOBS_MP4, 4, decoder="pyav")
    assert written.decoder == "opencv" and written.source == "jobs.mp4"
    assert torch.equal(written.frames, reference.frames) and written.indices == reference.indices


def test_bench_takes_decoded_frames_of_the_right_count(tiny_cache: Path) -> None:
    from earlytom.errors import InputError
    from earlytom.models.video import DecodedVideo
    from earlytom.runtime.bench import run_bench

    video = DecodedVideo(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), (0, 1), 2, None, Path("x.mp4"))
    with pytest.raises(InputError, match="the decoded video has 2 frames, not num_frames=4"):
        run_bench("tiny", video, [0.1], num_frames=4, device="cpu", cache_dir=tiny_cache)

"""`earlytom run`: output, JSON schema, and one-line errors with exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from videos import write_video

from earlytom.cli.main import cli


@pytest.fixture
def runner(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_cache.parent))
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_cache.parent / "empty-hub"))  # no real weights here
    return CliRunner()


def run(runner: CliRunner, *args: str):
    return runner.invoke(cli, ["run", *args], catch_exceptions=False)


def test_json_schema_and_compression(runner: CliRunner, jobs_mp4: Path) -> None:
    result = run(
        runner, "--video", str(jobs_mp4), "--prompt", "Describe the video.", "--json", "--max-new-tokens", "3"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"text", "token_ids", "frames_per_stage", "visual_tokens_before", "visual_tokens_after"} <= set(
        data
    )
    assert set(data["ttft_ms"]) >= {"vision_encoding", "token_processing", "llm_prefill", "total"}
    assert data["frames_per_stage"][0] == 32 and data["frames_per_stage"][-1] < 32
    assert data["visual_tokens_before"] == 6273
    assert abs(data["visual_tokens_after"] - (0.1 * 32 * 196 + 1)) < 0.05 * 628
    assert len(data["token_ids"]) <= 3


def test_summary_output(runner: CliRunner, jobs_mp4: Path) -> None:
    result = run(runner, "--video", str(jobs_mp4), "--prompt", "Hi", "--frames", "8", "--warmup", "0",
                 "--max-new-tokens", "2")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for label in (
        "frames    8 →",
        "(layer 23)",
        "tokens    1569 →",
        "TTFT",
        "vision encoding",
        "LLM prefill",
    ):
        assert label in result.stdout


def test_no_compress(runner: CliRunner, jobs_mp4: Path) -> None:
    result = run(runner, "--video", str(jobs_mp4), "--prompt", "Hi", "--frames", "4", "--no-compress",
                 "--json", "--warmup", "0", "--max-new-tokens", "1")  # fmt: skip
    data = json.loads(result.stdout)
    assert data["frames_per_stage"] == [4] and data["visual_tokens_after"] == 4 * 196 + 1


def write_text(path: Path) -> Path:
    path.write_text("not a video at all\n")
    return path


BAD = {
    "missing video": (["--video", "{tmp}/nope.mp4"], "nope.mp4"),
    "non-video file": (["--video", "{text}"], "not a video"),
    "no decodable frame": (["--video", "{empty}"], "no decodable frame"),
    "unknown model": (["--model", "llava-ov-13b"], "unknown model 'llava-ov-13b'"),
    "retention 0": (["--retention", "0"], "retention=0.0 is out of range"),
    "retention > 1": (["--retention", "1.5"], "retention=1.5 is out of range"),
    "prune layer >= layers": (["--prune-layers", "10,21,26", "--tau", "0.3"], "vision encoder has 26 layers"),
    "unsorted prune layers": (["--prune-layers", "21,10,23"], "strictly increasing"),
    "real model not local": (["--model", "llava-ov-7b"], "not in the local Hugging Face cache"),
    "empty prompt": (["--prompt", " "], "prompt is empty"),
    "placeholder in prompt": (["--prompt", "what is in <video>?"], "must not contain '<video>'"),
    "folder that is no checkpoint": (["--model", "{tmp}"], "is not a loadable LLaVA-OneVision checkpoint"),
    "untabled retention": (["--retention", "0.3"], "no setting for retention=0.3"),
    "bad device": (["--device", "tpu:x"], "unknown device 'tpu:x'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_1(
    runner: CliRunner, tmp_path: Path, jobs_mp4: Path, case: str
) -> None:
    args, expected = BAD[case]
    names = {
        "tmp": str(tmp_path),
        "text": str(write_text(tmp_path / "notes.mp4")),
        "empty": str(write_video(tmp_path / "empty.avi", 0)),  # AVI keeps an empty video stream
    }
    args = [a.format(**names) for a in args]
    defaults = {"--video": str(jobs_mp4), "--prompt": "Describe."}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    result = run(runner, *args, "--warmup", "0", "--max-new-tokens", "1", "--frames", "4")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_short_video_warns_and_repeats(runner: CliRunner, tmp_path: Path) -> None:
    video = write_video(tmp_path / "short.mp4", 3)
    result = run(runner, "--video", str(video), "--prompt", "Hi", "--frames", "8", "--json", "--warmup", "0",
                 "--max-new-tokens", "1")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr
    assert json.loads(result.stdout)["video"]["sampled_indices"] == [0, 0, 0, 0, 1, 1, 1, 2]


def test_verbose_keeps_traceback(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "--video", "x", "--prompt", "p", "--retention", "0", "--verbose"])
    assert result.exit_code != 0 and result.exception is not None


@pytest.mark.slow
def test_console_script_runs(tiny_cache: Path, jobs_mp4: Path) -> None:
    """The installed `earlytom` entry point, as a user runs it (fresh process)."""
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tiny_cache.parent)}
    exe = Path(sys.executable).with_name("earlytom")
    cmd = [str(exe) if exe.exists() else "earlytom", "run", "--video", str(jobs_mp4), "--prompt", "Hi",
           "--frames", "4", "--warmup", "0", "--max-new-tokens", "1", "--json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["frames_per_stage"][0] == 4


@pytest.mark.slow
def test_random_weights_real_architecture(runner: CliRunner, jobs_mp4: Path) -> None:
    """llava-ov-0.5b with random weights: the real SigLIP-so400m + Qwen2-0.5B, nothing downloaded."""
    result = run(runner, "--model", "llava-ov-0.5b", "--random-weights", "--video", str(jobs_mp4), "--prompt",
                 "Hi", "--frames", "4", "--json", "--warmup", "0", "--max-new-tokens", "2")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "llava-ov-0.5b" and data["frames_per_stage"][0] == 4
    assert data["visual_tokens_before"] == 4 * 196 + 1
    assert data["visual_tokens_after"] <= 4 * 196 + 1

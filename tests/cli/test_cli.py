"""The command lines: `earlytom run` output, JSON schema, one-line errors with exit code 1, and the
shared option groups every command takes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from videos import write_video

from earlytom.cli.bench import bench
from earlytom.cli.common import Command
from earlytom.cli.export import export
from earlytom.cli.flops import flops
from earlytom.cli.main import cli
from earlytom.cli.options import (
    BACKENDS,
    DeviceOptions,
    SettingOptions,
    device_options,
    setting_options,
)
from earlytom.cli.paramtypes import ModelOption
from earlytom.cli.profile import profile
from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import InputError
from earlytom.models.registry import MODELS


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
    "folder that is no checkpoint": (["--model", "{tmp}"], "has no readable config.json: is it a model"),
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


# --- the shared option groups (parse-only: no model runs) ----------------------------------------------

COMMANDS = {"run": cli.commands["run"], "export": export, "bench": bench, "flops": flops, "profile": profile}
SHARED = {
    "run": ["--model", "--random-weights", "--video", "--frames", "--preset", "--retention", "--tau",
            "--prune-layers", "--max-window", "--keep-last-middle", "--no-compress", "--inner-merge",
            "--backend", "--device", "--dtype", "--warmup", "--verbose"],
    "export": ["--model", "--random-weights", "--preset", "--retention", "--tau", "--prune-layers",
               "--max-window", "--keep-last-middle", "--verbose"],
    "bench": ["--model", "--random-weights", "--video", "--frames", "--preset", "--retention", "--backend",
              "--device", "--dtype", "--runs", "--warmup", "--verbose"],
    "flops": ["--model", "--frames", "--preset", "--retention", "--prune-layers", "--max-window",
              "--inner-merge", "--verbose"],
    "profile": ["--video", "--frames", "--warmup", "--verbose"],
}  # fmt: skip


def invoke(name: str, *args: str) -> Result:
    return CliRunner().invoke(COMMANDS[name], list(args), catch_exceptions=False)


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("name", list(SHARED))
def test_help_lists_the_shared_flags(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.stderr
    listed = {match.group(1) for match in re.finditer(r"^\s+(--[a-z-]+)", result.stdout, re.M)}
    assert set(SHARED[name]) <= listed, set(SHARED[name]) - listed
    unwrapped = re.sub(r"-\s+", "-", result.stdout)  # click may wrap a model name at its hyphen
    assert all(model in unwrapped for model in MODELS) or "--model" not in SHARED[name]


def test_a_shared_flag_has_one_type_and_help_everywhere() -> None:
    seen: dict[str, list[click.Parameter]] = {}
    for command in COMMANDS.values():
        for param in command.params:
            seen.setdefault(param.opts[0], []).append(param)
    own = {"--out", "--json"}  # what each command writes: its own meaning and help
    shared = {flag: params for flag, params in seen.items() if len(params) > 1 and flag not in own}
    assert set(shared) >= {
        "--model",
        "--frames",
        "--retention",
        "--max-window",
        "--warmup",
        "--video",
        "--prompt",
    }
    for flag, params in shared.items():
        if flag == "--retention":  # bench's is a comma list: one setting per value
            params = [p for p in params if p.name == "retention"]
        assert len({json.dumps(p.type.to_info_dict(), default=str) for p in params}) == 1, flag
        assert len({p.help for p in params}) == 1, flag
    assert isinstance(export.params[0], ModelOption) and isinstance(flops.params[0], ModelOption)


def test_every_backend_flag_is_the_same_choice() -> None:
    backends = [p for c in COMMANDS.values() for p in c.params if p.name == "backend"]
    assert len(backends) == 2 and all(list(p.type.choices) == list(BACKENDS) for p in backends)  # type: ignore[attr-defined]


VIDEO = ["--video", "v.mp4"]  # parse errors come before any file is read
NEEDS = {
    "run": [*VIDEO, "--prompt", "p"],
    "bench": VIDEO,
    "profile": ["folder", *VIDEO],
    "export": [],
    "flops": [],
}


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "bench",
            ["--backend", "cuda"],
            "Invalid value for '--backend': 'cuda' is not one of 'auto', 'torch'",
        ),
        ("run", ["--backend", "trt"], "'trt' is not one of 'auto', 'torch', 'onnxruntime', 'tensorrt'"),
        ("run", ["--frames", "0"], "--frames=0 is out of range: must be an integer in 1..1024"),
        ("bench", ["--frames", "0"], "--frames=0 is out of range: must be an integer in 1..1024"),
        ("flops", ["--frames", "0"], "--frames=0 is out of range: must be an integer in 1..1024"),
        ("profile", ["--frames", "0"], "--frames=0 is out of range: must be an integer in 1..1024"),
        ("run", ["--warmup", "-1"], "--warmup=-1 is out of range: must be an integer >= 0"),
        ("bench", ["--warmup", "-1"], "--warmup=-1 is out of range: must be an integer >= 0"),
        ("profile", ["--warmup", "-1"], "--warmup=-1 is out of range: must be an integer >= 0"),
        ("bench", ["--runs", "0"], "--runs=0 is out of range: must be an integer >= 1"),
        ("bench", ["--runs", "two"], "--runs=two is out of range"),
        ("profile", ["--iterations", "0"], "--iterations=0 is out of range"),
        ("run", ["--max-new-tokens", "0"], "--max-new-tokens=0 is out of range"),
        (
            "export",
            ["--prune-layers", "10,x"],
            "--prune-layers '10,x' is not a comma-separated list of layer",
        ),
        ("flops", ["--prune-layers", "a"], "--prune-layers 'a' is not a comma-separated list"),
        ("bench", ["--retention", "ten"], "--retention 'ten' is not a comma-separated list"),
        ("export", ["--dtype", "float16"], "No such option '--dtype'"),
        ("export", ["--preset", "foo"], "Invalid value for '--preset': 'foo' is not one of 'videomme'"),
    ],
)
def test_bad_flags_are_one_line_errors(name: str, args: list[str], message: str) -> None:
    assert message in one_error_line(invoke(name, *NEEDS[name], *args))


def test_a_missing_required_flag_is_one_line() -> None:
    assert "Missing option '--video'" in one_error_line(invoke("bench"))


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[EarlyTomConfig]:
    """The EarlyTomConfig each command builds from its flags; the command stops right after."""
    seen: list[EarlyTomConfig] = []
    build = SettingOptions.config

    def config(self: SettingOptions, family: str = "llava-onevision") -> EarlyTomConfig:
        seen.append(build(self, family))
        raise InputError("stopped once the config was built")

    monkeypatch.setattr(SettingOptions, "config", config)
    return seen


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("run", ["--video", "v.mp4", "--prompt", "p", "--keep-last-middle"]),
        ("export", ["--keep-last-middle"]),
    ],
)
def test_setting_flags_reach_the_config(configs: list[EarlyTomConfig], name: str, args: list[str]) -> None:
    flags = ["--retention", "0.3", "--tau", "0.5", "--prune-layers", "4,8", "--max-window", "4"]
    assert "stopped once" in one_error_line(invoke(name, *args, *flags))
    expected = preset("videomme", 0.3, tau=0.5, prune_layers=(4, 8), max_window=4, drop_last_middle=False)
    assert configs == [expected]


def test_export_max_window_reaches_the_config(configs: list[EarlyTomConfig]) -> None:
    one_error_line(invoke("export", "--max-window", "3", "--preset", "mvbench", "--retention", "0.15"))
    assert configs == [preset("mvbench", 0.15, max_window=3)]


def test_flops_setting_needs_no_tau(configs: list[EarlyTomConfig]) -> None:
    one_error_line(invoke("flops", "--retention", "0.3", "--prune-layers", "4,8", "--max-window", "5"))
    assert configs == [EarlyTomConfig(retention=0.3, prune_layers=(4, 8), max_window=5)]


def test_setting_flags_cannot_change_an_exported_folder(tmp_path: Path) -> None:
    args = ["--artifacts", str(tmp_path), "--video", "v.mp4", "--prompt", "p", "--tau", "0.4"]
    line = one_error_line(invoke("run", *args, "--max-window", "4", "--no-inner-merge"))
    assert "--tau, --max-window cannot change an exported folder's setting" in line


@click.command(cls=Command)
@setting_options(no_compress=True, inner_merge=True)
@device_options()
def probe(setting: SettingOptions, device: DeviceOptions) -> None:
    parsed = {
        "given": setting.given,
        "config": setting.config().to_dict(),
        "inner_merge": setting.inner_merge,
    }
    click.echo(json.dumps(parsed | {"device": [device.device, device.dtype]}))


def test_groups_collapse_into_one_object_each() -> None:
    plain = json.loads(CliRunner().invoke(probe, []).stdout)
    assert plain == {"given": [], "config": EarlyTomConfig().to_dict(), "inner_merge": True,
                     "device": ["auto", "auto"]}  # fmt: skip
    args = ["--retention", "0.3", "--tau", "0.5", "--prune-layers", "4,8", "--no-inner-merge",
            "--no-compress", "--dtype", "float16"]  # fmt: skip
    data = json.loads(CliRunner().invoke(probe, args).stdout)
    assert data["given"] == ["--retention", "--tau", "--prune-layers", "--no-compress"]  # Stage III is not
    assert data["config"] == preset("videomme", 0.3, tau=0.5, prune_layers=(4, 8), enabled=False).to_dict()
    assert data["inner_merge"] is False and data["device"] == ["auto", "float16"]


def test_device_options_give_a_torch_dtype() -> None:
    import torch

    assert DeviceOptions().torch_dtype() is None
    assert DeviceOptions(dtype="bfloat16").torch_dtype() is torch.bfloat16


def test_command_modules_import_no_model_library() -> None:
    code = (
        "import sys, earlytom.cli.options, earlytom.cli.export, earlytom.cli.profile\n"
        "heavy = {'torch', 'transformers', 'av', 'onnx'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

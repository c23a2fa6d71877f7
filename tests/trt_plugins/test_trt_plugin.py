"""The TokenSelect kernel and TensorRT plugin: host twin vs the reference, nvcc build, TensorRT-RTX use.

The kernel's decisions (`keepsToken`), offsets and guards are shared with a serial host twin that
runs here on the CPU against the torch op. The CUDA sources and the plugin are compiled with nvcc,
and TensorRT-RTX builds the select stage with the plugin ahead of time; each plugin-loading step
runs in a subprocess, because a loaded plugin stays registered for the rest of a process.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from earlytom.compression import frame_kinds, selected_count, token_budget
from earlytom.ops import token_select
from earlytom.trt_plugins.library import KERNELS, LIBRARY, SOURCE_DIR, STATIC_LIBRARY, build_plugin_libraries

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def host_twin(tmp_path_factory) -> ctypes.CDLL:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    library = tmp_path_factory.mktemp("host") / "libtoken_select_host.so"
    subprocess.run(
        [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", str(SOURCE_DIR / "token_select_host.cpp"),
         "-o", str(library)],
        check=True,
    )  # fmt: skip
    return ctypes.CDLL(str(library))


def run_host(host: ctypes.CDLL, features, scores, kinds, budget, count: int):
    tokens = torch.zeros(count, features.shape[2], dtype=features.dtype)
    index = torch.full((count, 2), -1, dtype=torch.int64)
    row_bytes = features.shape[2] * features.element_size()
    host.earlytomTokenSelectHost(
        ctypes.c_void_p(features.data_ptr()), ctypes.c_void_p(scores.data_ptr()),
        ctypes.c_void_p(kinds.data_ptr()), ctypes.c_void_p(budget.data_ptr()),
        ctypes.c_int64(features.shape[0]), ctypes.c_int64(features.shape[1]), ctypes.c_int64(row_bytes),
        ctypes.c_int64(count), ctypes.c_void_p(tokens.data_ptr()), ctypes.c_void_p(index.data_ptr()),
    )  # fmt: skip
    return tokens, index


def random_case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    frames = int(torch.randint(1, 40, (1,), generator=generator))
    tokens_per_frame = [1, 7, 196, 197, 729][seed % 5]
    channels = [1, 3, 8, 64][seed % 4]
    dtype = torch.float16 if seed % 2 else torch.float32
    cuts = (
        sorted(set(torch.randint(1, frames, (frames // 3,), generator=generator).tolist()))
        if frames > 1
        else []
    )
    bounds = [0, *cuts, frames]
    groups = [(a, b - 1) for a, b in itertools.pairwise(bounds)]
    scores = torch.rand(frames, tokens_per_frame, generator=generator)
    if seed % 3 == 0:  # many ties: the lower position must win
        scores = (scores * 3).floor() / 3
    retention = [0.01, 0.1, 0.25, 1.0][seed % 4]
    budget = token_budget(tokens_per_frame, frames, retention=retention, base_frames=32)
    kinds = frame_kinds(groups, frames)
    return (
        torch.randn(frames, tokens_per_frame, channels, generator=generator).to(dtype),
        scores,
        torch.tensor(kinds),
        torch.tensor([budget.dynamic, budget.static]),
        torch.arange(selected_count(kinds, budget)),
    )


@pytest.mark.parametrize("seed", range(60))
def test_host_twin_of_the_kernel_equals_the_reference(host_twin, seed: int) -> None:
    features, scores, kinds, budget, slots = random_case(seed)
    tokens, index = run_host(host_twin, features, scores, kinds, budget, slots.shape[0])
    expected_tokens, expected_index = token_select(features, scores, kinds, budget, slots)
    assert torch.equal(index, expected_index)
    assert torch.equal(tokens, expected_tokens)


def test_host_twin_never_writes_past_n(host_twin) -> None:
    features, scores, kinds, budget, slots = random_case(7)
    short = slots.shape[0] - 3
    _, index = run_host(host_twin, features, scores, kinds, budget, short)
    _, expected_index = token_select(features, scores, kinds, budget, slots)
    assert torch.equal(index, expected_index[:short])


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    from earlytom.errors import InputError

    try:
        built = build_plugin_libraries(tmp_path_factory.mktemp("plugins"), architectures=("80-real",))
    except InputError as exc:  # no nvcc or no TensorRT headers on this machine
        pytest.skip(str(exc))
    return built.folder


def test_nvcc_builds_both_plugin_libraries(plugin_dir: Path) -> None:
    record = json.loads((plugin_dir / "plugins.json").read_text())
    assert set(record["libraries"]) == {LIBRARY, STATIC_LIBRARY, KERNELS}
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(plugin_dir / LIBRARY)], capture_output=True, text=True
    )
    exported = {line.split()[-1] for line in symbols.stdout.splitlines()}
    assert {"getCreators", "setLoggerFinder"} <= exported
    undefined = subprocess.run(
        ["nm", "-D", "-u", str(plugin_dir / STATIC_LIBRARY)], capture_output=True, text=True
    )
    assert "getPluginRegistry" in undefined.stdout, "the static variant registers through TensorRT's registry"
    assert (
        "getPluginRegistry"
        not in subprocess.run(
            ["nm", "-D", "-u", str(plugin_dir / LIBRARY)], capture_output=True, text=True
        ).stdout
    ), "the dynamic library must not touch the registry itself (TensorRT-RTX crashes)"


PARSE_SCRIPT = """
import json, sys
import tensorrt_rtx as trt
from earlytom.trt_plugins.registry import ensure_rtx_parser_can_load_plugins, load_plugin_library
if sys.argv[2] != "-":
    ensure_rtx_parser_can_load_plugins(trt, create=True)
    load_plugin_library(trt, __import__("pathlib").Path(sys.argv[2]))
logger = trt.Logger(trt.Logger.ERROR)
builder = trt.Builder(logger)
network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
parser = trt.OnnxParser(network, logger)
assert parser.parse_from_file(sys.argv[1]), [parser.get_error(i).desc() for i in range(parser.num_errors)]
layers = sorted({network.get_layer(i).type.name for i in range(network.num_layers)})
config = builder.create_builder_config()
config.num_compute_capabilities = 1
config.set_compute_capability(trt.ComputeCapability.SM80, 0)
profile = builder.create_optimization_profile()
for name, shape in (("features", (196, 64)), ("scores", (196,)), ("frame_kind", ())):
    profile.set_shape(name, (1, *shape), (32, *shape), (64, *shape))
profile.set_shape("token_slots", (1,), (628,), (64 * 196,))
config.add_optimization_profile(profile)
print(json.dumps({"layers": layers, "built": builder.build_serialized_network(network, config) is not None}))
"""


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_tensorrt_rtx_uses_the_plugin_when_loaded_and_the_body_when_not(plugin_dir, tmp_path, dtype) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")
    import onnx
    from op_graphs import export_select

    example = (
        torch.randn(3, 196, 64).to(dtype), torch.rand(3, 196), torch.zeros(3, dtype=torch.int64),
        torch.tensor([2, 1]), torch.arange(6),
    )  # fmt: skip
    path = tmp_path / "select.onnx"
    onnx.save(export_select(example), path)

    def parse(library: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-c", PARSE_SCRIPT, str(path), library], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    with_plugin = parse(str(plugin_dir / LIBRARY))
    assert with_plugin == {"layers": ["PLUGIN_V3"], "built": True}
    without = parse("-")
    assert "PLUGIN_V3" not in without["layers"] and without["built"]


def test_export_builds_the_select_plan_with_the_plugin_and_profile_prints_commands(
    plugin_dir: Path, tiny_cache: Path, jobs_mp4: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")
    out = tmp_path / "tiny"
    env = {"XDG_CACHE_HOME": str(tiny_cache.parent)}
    command = [
        sys.executable, "-m", "earlytom.cli.export", "--model", "tiny", "--out", str(out),
        "--validation-frames", "4", "--token-select", "plugin", "--plugin-library", str(plugin_dir / LIBRARY),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**__import__("os").environ, **env})
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["token_select"] == "plugin"
    files = manifest["engines"]["files"]
    assert [f["needs_plugin"] for f in files] == [False, False, False, False, True]
    assert files[-1]["network_layers"]["PLUGIN_V3"] == 1
    assert (out / manifest["engines"]["plugin"]["file"]).is_file()

    from earlytom.cli.main import cli

    printed = CliRunner().invoke(
        cli,
        ["profile", str(out), "--video", str(jobs_mp4), "--print-commands", "--out", str(tmp_path / "p")],
        env=env,
    )
    assert printed.exit_code == 0, printed.output
    lines = [line for line in printed.output.splitlines() if line.startswith("tensorrt_rtx ")]
    assert len(lines) == 5
    for line, entry in zip(lines, files, strict=True):
        assert f"--loadEngine={out / entry['file']}" in line
        assert "--useCudaGraph --noDataTransfers --separateProfileRun --dumpProfile" in line
        assert ("--dynamicPlugins=" in line) == entry["needs_plugin"]
    assert "--shapes=pixel_values:32x3x384x384" in lines[0]
    select = lines[-1]
    slots = int(select.split("token_slots:")[1].split()[0].split(",")[0])
    frames = int(select.split("--shapes=features:")[1].split("x")[0])
    budget = torch.from_numpy(
        __import__("numpy").fromfile(tmp_path / "p" / "inputs" / "select.budget.bin", dtype="int64")
    )
    kinds = __import__("numpy").fromfile(tmp_path / "p" / "inputs" / "select.frame_kind.bin", dtype="int64")
    assert len(kinds) == frames and slots == selected_count(
        kinds.tolist(), token_budget(196, frames, retention=0.1, base_frames=32)
    )
    assert budget.tolist() == [token_budget(196, frames, retention=0.1, base_frames=32).dynamic,
                               token_budget(196, frames, retention=0.1, base_frames=32).static]  # fmt: skip


def test_plugin_mode_without_a_library_is_one_line(tiny_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is installed by scripts/setup.sh")
    from earlytom.cli.export import export

    out = tmp_path / "tiny"
    result = CliRunner().invoke(
        export,
        ["--model", "tiny", "--out", str(out), "--token-select", "plugin", "--validation-frames", "2"],
        env={"XDG_CACHE_HOME": str(tiny_cache.parent)},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "earlytom build-plugins" in result.output and "Traceback" not in result.output
    assert not out.exists()

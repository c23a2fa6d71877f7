"""TokenSelect on a GPU: the fused CUDA kernel vs the same selection in standard ops.

Shape: 32 frames x 196 pooled tokens x 3584 channels (LLaVA-OV-7B, fp16), frame kinds from a
realistic grouping, budget for 10 % retention. Compared, each as the median of --runs after
--warmup (CUDA events):
  kernel       the fused kernel (libearlytom_kernels.so from `earlytom build-plugins`)
  torch_ops    the torch reference op (stable sort, scatter, nonzero, gather)
  trt_plugin / trt_body  (when TensorRT-RTX runs on this GPU) a one-node engine with the plugin,
               and the same graph with the ONNX function body inlined (standard TensorRT layers)
Writes token_select-<device>.json to --out. A part that cannot run here (no CUDA device, no kernel
library, no TensorRT-RTX) is recorded under "skipped" with the reason and the rest still runs: the
torch timing is always there. Exit 1 only when a part ran and disagreed with the reference.
On a CPU (`--device cpu`) only torch_ops runs, timed with perf_counter: a plumbing check.

    python benchmarks/token_select_bench.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from earlytom.compression import frame_kinds, selected_count, token_budget
from earlytom.ops import TOKEN_SELECT, token_select


def time_ms(fn: Any, runs: int, warmup: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type != "cuda":
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000.0)
            continue
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return times


def inputs(frames: int, channels: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    groups = [(s, min(s + 4, frames - 1)) for s in range(0, frames, 5)]  # groups of 5: 2 dynamic, 3 static
    kinds = frame_kinds(groups, frames)
    budget = token_budget(196, frames, retention=0.1, base_frames=32)
    return tuple(
        t.to(device)
        for t in (
            torch.randn(frames, 196, channels, generator=generator).half(),
            torch.rand(frames, 196, generator=generator),
            torch.tensor(kinds),
            torch.tensor([budget.dynamic, budget.static]),
            torch.arange(selected_count(kinds, budget)),
        )
    )


class Unavailable(Exception):
    """A part that cannot run on this machine: recorded as skipped, with the reason."""


class Disagrees(Exception):
    """A part that ran and gave other results than the torch reference: a failure."""


def kernel_fn(args: tuple[torch.Tensor, ...]) -> Any:
    from earlytom.trt_plugins.library import KERNELS, default_plugin_dir

    path = default_plugin_dir() / KERNELS
    if not path.is_file():
        raise Unavailable(f"no kernel library at {path}: build it with earlytom build-plugins --arch 90-real")
    try:
        library = ctypes.CDLL(str(path))
    except OSError as exc:  # built for another CUDA, or its runtime libraries are missing
        raise Unavailable(f"{path} does not load here ({' '.join(str(exc).split())})") from exc
    features, scores, kinds, budget, slots = args
    tokens = torch.empty(slots.shape[0], features.shape[2], dtype=features.dtype, device="cuda")
    index = torch.empty(slots.shape[0], 2, dtype=torch.int64, device="cuda")
    pointers = [ctypes.c_void_p(t.data_ptr()) for t in (features, scores, kinds, budget)]
    sizes = [ctypes.c_int64(v) for v in (features.shape[0], 196, features.shape[2] * 2, slots.shape[0])]

    def run() -> None:
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        status = library.earlytomTokenSelect(
            *pointers, *sizes, ctypes.c_void_p(tokens.data_ptr()), ctypes.c_void_p(index.data_ptr()), stream
        )
        assert status == 0

    run()
    expected = token_select(*args)
    torch.cuda.synchronize()
    if not (torch.equal(index, expected[1]) and torch.equal(tokens, expected[0])):
        raise Disagrees("kernel disagrees with the reference")
    return run


def tensorrt_fns(args: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """One-node engines built on this GPU: the plugin, and the inlined function body."""
    try:
        import onnx
        import tensorrt_rtx as trt
    except ImportError as exc:
        raise Unavailable(f"{exc.name or exc} is not installed") from exc

    from earlytom.engines.runner import TrtPlan
    from earlytom.ops.onnx_function import (
        ONNX_OPSET,
        attach_token_select_function,
        inline_token_select_function,
        token_select_translation,
    )
    from earlytom.trt_plugins.library import LIBRARY, default_plugin_dir
    from earlytom.trt_plugins.registry import ensure_rtx_parser_can_load_plugins, load_plugin_library

    class Select(torch.nn.Module):
        def forward(self, *xs: torch.Tensor) -> Any:
            return torch.ops.earlytom.token_select(*xs)

    frames = torch.export.Dim("frames", min=1, max=64)
    selected = torch.export.Dim("selected", min=1, max=64 * 196)
    cpu = tuple(a.cpu() for a in args)
    translation = token_select_translation()
    program = torch.onnx.export(
        Select(), cpu, input_names=list(TOKEN_SELECT.inputs), output_names=list(TOKEN_SELECT.outputs),
        dynamic_shapes=({0: frames}, {0: frames}, {0: frames}, None, {0: selected}), opset_version=ONNX_OPSET,
        dynamo=True, custom_translation_table={torch.ops.earlytom.token_select.default: translation},
    )  # fmt: skip
    model = attach_token_select_function(program.model_proto)
    ensure_rtx_parser_can_load_plugins(trt, create=True)
    load_plugin_library(trt, default_plugin_dir() / LIBRARY)
    logger = trt.Logger(trt.Logger.ERROR)
    runtime = trt.Runtime(logger)
    fns = {}
    folder = Path(tempfile.mkdtemp())
    for name, graph in (("trt_plugin", model), ("trt_body", inline_token_select_function(model))):
        path = folder / f"{name}.onnx"
        onnx.save(graph, path)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        assert parser.parse_from_file(str(path))
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        for tensor, value in zip(TOKEN_SELECT.inputs, args, strict=True):
            if tensor != "budget":
                shape = tuple(value.shape)
                profile.set_shape(tensor, (1, *shape[1:]), shape, (shape[0] * 2, *shape[1:]))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        (folder / f"{name}.plan").write_bytes(bytes(plan))
        engine = TrtPlan(trt, runtime, folder / f"{name}.plan")
        feed = dict(zip(TOKEN_SELECT.inputs, args, strict=True))
        out = engine(feed)
        torch.cuda.synchronize()
        expected = token_select(*args)
        if not torch.equal(out["token_index"], expected[1]):
            raise Disagrees(f"{name} disagrees with the reference")
        fns[name] = lambda engine=engine, feed=feed: engine(feed)
    return fns


def candidates(
    args: tuple[torch.Tensor, ...], device: torch.device
) -> tuple[dict[str, Callable[[], Any]], dict[str, str], dict[str, str], dict[str, str]]:
    """(what to time, skipped part -> reason, failed part -> message, notes)."""
    found: dict[str, Callable[[], Any]] = {"torch_ops": lambda: token_select(*args)}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    notes: dict[str, str] = {}
    parts: dict[str, Callable[[], Any]] = {"kernel": lambda: {"kernel": kernel_fn(args)},
                                           "tensorrt_rtx": lambda: tensorrt_fns(args)}  # fmt: skip
    for part, make in parts.items():
        if device.type != "cuda":
            skipped[part] = "needs a CUDA device"
            continue
        try:
            found.update(make())
        except Unavailable as exc:
            skipped[part] = str(exc)
        except Disagrees as exc:
            failed[part] = str(exc)
        except Exception as exc:  # report, do not hide: whether TensorRT-RTX runs on this GPU is a finding
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            (failed if part == "kernel" else notes)[part] = message  # a kernel that errors is a failure
    return found, skipped, failed, notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3584)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (cpu: torch_ops only)")
    options = parser.parse_args()
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if options.device == "auto" else options.device)
    args = inputs(options.frames, options.channels, device)
    timed, skipped, failed, notes = candidates(args, device)
    results = {name: time_ms(fn, options.runs, options.warmup, device) for name, fn in timed.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {
        "device": name,
        "torch": torch.__version__,
        "clock": "CUDA events" if device.type == "cuda" else "perf_counter (CPU: plumbing, not a result)",
        "shape": {"frames": options.frames, "tokens": 196, "channels": options.channels, "dtype": "float16"},
        "selected": int(args[4].shape[0]),
        "runs": options.runs,
        "warmup": options.warmup,
        "median_ms": {name: statistics.median(t) for name, t in results.items()},
        "times_ms": results,
        "skipped": skipped,
        "failed": failed,
        "notes": notes,
        "date": time.strftime("%Y-%m-%d"),
    }
    options.out.mkdir(parents=True, exist_ok=True)
    path = options.out / f"token_select-{name.replace(' ', '_')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for part, value in report["median_ms"].items():
        print(f"{part:<12} {value:8.4f} ms")
    for part, reason in {**skipped, **failed}.items():
        print(f"{part:<12} {'failed' if part in failed else 'skipped'}: {reason}")
    print(f"wrote {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

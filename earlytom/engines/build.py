"""Build one strongly typed plan per ONNX segment (frames profile min/opt/max), atomically."""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from earlytom.artifact import (
    Artifact,
    EngineEntry,
    EngineSet,
    FrameProfile,
    PluginEntry,
    SegmentEntry,
    file_sha256,
)
from earlytom.engines.builders import Builder, Target, load_builder, target
from earlytom.errors import ExportError
from earlytom.models.context import MAX_FRAMES
from earlytom.models.segments import FRAMES, SELECTED

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildConfig:
    target: str = "a100"
    min_frames: int = 1
    opt_frames: int = 32
    max_frames: int = 64
    builder: str = "auto"  # auto | tensorrt | tensorrt_rtx

    def __post_init__(self) -> None:
        target(self.target)  # unknown target -> ExportError
        if not 1 <= self.min_frames <= self.opt_frames <= self.max_frames <= MAX_FRAMES:
            raise ExportError(
                f"frame profile {self.min_frames}/{self.opt_frames}/{self.max_frames} is invalid: "
                f"need 1 <= min <= opt <= max <= {MAX_FRAMES}"
            )
        load_builder(self.builder)  # not installed -> MissingDependencyError, before any export work


def build_engines(
    artifact: Artifact,
    build: BuildConfig,
    *,
    plugin_library: Path | None = None,
    progress: Progress = lambda _: None,
) -> Artifact:
    """One plan per ONNX stage of `artifact`, written beside it; the artifact with its engine set.

    With the artifact's TokenSelect as a plugin node, the plugin library is registered before
    parsing, every plan that uses it says so, and a copy of the library goes into `plugins/`.
    """
    root, manifest = artifact.folder, artifact.manifest
    builder = load_builder(build.builder)
    chosen = target(build.target)
    _check_target(builder, chosen)
    trt = builder.module
    plugin = (
        _register_plugin(trt, root, plugin_library, progress) if manifest.token_select == "plugin" else None
    )
    logger = trt.Logger(trt.Logger.ERROR)  # its warnings (int64 bindings...) are expected here
    cache_path = root / "timing.cache"
    sizes = _profile_sizes(build, manifest.config.retention, manifest.geometry.pooled_tokens_per_frame)
    engines = [
        _build_entry(
            trt,
            builder,
            logger,
            artifact.path(entry.file),
            entry,
            chosen,
            cache_path,
            sizes,
            plugin,
            progress,
        )
        for entry in manifest.segments
    ]
    engine_set = EngineSet(
        builder=builder.name,
        version=builder.version,
        target=chosen.name,
        compute_capability=tuple(chosen.compute_capability),
        profile=FrameProfile(build.min_frames, build.opt_frames, build.max_frames),
        timing_cache=cache_path.name if cache_path.exists() else None,
        token_select=manifest.token_select,
        plugin=plugin,
        files=tuple(engines),
    )
    return replace(artifact, manifest=replace(manifest, engines=engine_set))


def _build_entry(
    trt: Any,
    builder: Builder,
    logger: Any,
    onnx_path: Path,
    entry: SegmentEntry,
    chosen: Target,
    cache_path: Path,
    sizes: dict[str, tuple[int, int, int]],
    plugin: PluginEntry | None,
    progress: Progress,
) -> EngineEntry:
    """Build and write one stage's plan beside its ONNX file."""
    progress(f"building {entry.name} for {chosen.name} ({chosen.sm}) with {builder.name} {builder.version}")
    start = time.perf_counter()
    plan, layers = _build_one(trt, builder, logger, onnx_path, chosen, cache_path, entry, sizes)
    plugin_layers = sum(n for kind, n in layers.items() if kind.startswith("PLUGIN"))
    if plugin is not None and entry.kind == "select" and plugin_layers == 0:
        raise ExportError(
            f"{builder.name} built {entry.name} without the TokenSelect plugin although it is "
            "registered: the node's plugin attributes do not match the library's creator"
        )
    engine_path = onnx_path.with_suffix(".plan")
    _write_atomic(engine_path, plan)
    seconds = time.perf_counter() - start
    progress(f"built {engine_path.name} ({len(plan) / 2**20:.1f} MiB) in {seconds:.1f} s")
    return EngineEntry(
        segment=entry.name,
        file=engine_path.name,
        sha256=file_sha256(engine_path),
        onnx_sha256=entry.sha256,
        build_seconds=round(seconds, 2),
        network_layers=dict(sorted(layers.items())),
        plugin_layers=plugin_layers,
        needs_plugin=plugin_layers > 0,
    )


def _profile_sizes(build: BuildConfig, retention: float, pooled: int) -> dict[str, tuple[int, int, int]]:
    """min/opt/max of each dynamic axis: frames, and N (one token, r·B·P at opt, every token at max)."""
    selected = (1, max(1, math.ceil(retention * build.opt_frames * pooled)), build.max_frames * pooled)
    return {FRAMES: (build.min_frames, build.opt_frames, build.max_frames), SELECTED: selected}


def _register_plugin(trt: Any, root: Path, library: Path | None, progress: Progress) -> PluginEntry:
    """Load the TokenSelect plugin into `trt` and copy it (and its static twin) into root/plugins/."""
    from earlytom.trt_plugins.library import LIBRARY, STATIC_LIBRARY, find_plugin_library
    from earlytom.trt_plugins.registry import load_plugin_library

    found = find_plugin_library(library)
    if found is None:
        raise ExportError(
            "the select stage uses the EarlyTomTokenSelect plugin but no plugin library was found: "
            "run 'earlytom build-plugins' first, or export with --token-select onnx"
        )
    load_plugin_library(trt, found)
    progress(f"registered the TokenSelect plugin from {found}")
    folder = root / "plugins"
    folder.mkdir(exist_ok=True)
    record: dict[str, Any] = {}
    for key, name, source in (
        ("file", LIBRARY, found),
        ("static_file", STATIC_LIBRARY, found.with_name(STATIC_LIBRARY)),
    ):
        if source.is_file():
            _write_atomic(folder / name, source.read_bytes())
            record[key] = f"plugins/{name}"
            record[key.replace("file", "sha256")] = file_sha256(folder / name)
    return PluginEntry(**record)


def _check_target(builder: Builder, chosen: Target) -> None:
    if builder.name == "tensorrt_rtx":
        return  # builds ahead of time for a named compute capability, no GPU needed
    major = int(builder.version.split(".")[0])
    if major < 10:
        raise ExportError(f"TensorRT {builder.version} is too old: earlytom needs TensorRT >= 10")
    import torch

    if not torch.cuda.is_available():
        raise ExportError(
            "full TensorRT builds on the GPU it targets and none is visible: "
            "install tensorrt-rtx to build ahead of time"
        )
    local = torch.cuda.get_device_capability()
    if tuple(local) != chosen.compute_capability:
        raise ExportError(
            f"target {chosen.name} is {chosen.sm} but this GPU is SM{local[0]}{local[1]}: full TensorRT "
            "builds for the local GPU, so pick its target or build with tensorrt-rtx"
        )


def _build_one(
    trt: Any,
    builder_info: Builder,
    logger: Any,
    onnx_path: Path,
    chosen: Target,
    cache_path: Path,
    entry: SegmentEntry,
    sizes: dict[str, tuple[int, int, int]],
) -> tuple[bytes, Counter[str]]:
    builder = trt.Builder(logger)
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(strongly_typed)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise ExportError(f"{builder_info.name} cannot parse {onnx_path.name}: {errors}")
    layers = Counter(network.get_layer(i).type.name for i in range(network.num_layers))

    config = builder.create_builder_config()
    if builder_info.name == "tensorrt_rtx":
        config.num_compute_capabilities = 1
        config.set_compute_capability(getattr(trt.ComputeCapability, chosen.sm), 0)
    if builder_info.name == "tensorrt":
        # Full TensorRT times tactics on the GPU; the cache makes rebuilds fast. TensorRT-RTX builds
        # ahead of time without timing (kernels are specialised on the target GPU at load time).
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    config.add_optimization_profile(_profile(builder, entry, sizes))

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"{builder_info.name} failed to build {onnx_path.name} (see the log above)")
    if builder_info.name == "tensorrt":
        _write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan), layers


def _profile(builder: Any, entry: SegmentEntry, sizes: dict[str, tuple[int, int, int]]) -> Any:
    """One profile from the stage's declared inputs: each dynamic axis gets its min/opt/max."""
    profile = builder.create_optimization_profile()
    for tensor in entry.inputs:
        head, rest = tensor.shape[0], [int(d) for d in tensor.shape[1:]]
        if isinstance(head, str):
            profile.set_shape(tensor.name, *([n, *rest] for n in sizes[head]))
    return profile


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)

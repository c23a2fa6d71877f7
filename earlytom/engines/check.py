"""Refuse engine folders built for another builder, version, GPU or EarlyTom setting (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlytom.config import EarlyTomConfig
from earlytom.errors import EngineMismatchError
from earlytom.exporter.manifest import config_sha256, read_manifest
from earlytom.exporter.onnx_export import file_sha256


@dataclass(frozen=True)
class RuntimeInfo:
    """What will load the plans: the TensorRT flavour and version, and the GPU's compute capability."""

    builder: str
    version: str
    compute_capability: tuple[int, int] | None  # None: no GPU visible


def check_engines(
    folder: Path, runtime: RuntimeInfo, *, config: EarlyTomConfig | None = None, verify_files: bool = True
) -> dict[str, Any]:
    """The manifest of `folder` if its plans can run under `runtime` (with `config`), else a clear error."""
    manifest = read_manifest(folder)
    engines = manifest.get("engines")
    if not engines:
        raise EngineMismatchError(f"{folder} has ONNX segments but no engines (exported with --skip-build)")
    built = f"{engines['builder']} {engines['version']}"
    if engines["builder"] != runtime.builder:
        raise EngineMismatchError(
            f"engines in {folder} were built with {built} and cannot load in {runtime.builder}: "
            f"re-export with --builder {runtime.builder}"
        )
    if engines["version"] != runtime.version:
        raise EngineMismatchError(
            f"engines in {folder} were built with {built}, this is {runtime.builder} {runtime.version}: "
            "re-export them with the installed version"
        )
    capability = tuple(engines["compute_capability"])
    if runtime.compute_capability is not None and runtime.compute_capability != capability:
        have = "SM{}{}".format(*runtime.compute_capability)
        raise EngineMismatchError(
            f"engines in {folder} target {engines['target']} (SM{capability[0]}{capability[1]}) but this GPU "
            f"is {have}: re-export with the matching --target"
        )
    if config is not None and config_sha256(config) != manifest["config_sha256"]:
        raise EngineMismatchError(
            f"engines in {folder} were exported for another EarlyTom setting "
            f"({_describe(manifest['earlytom_config'])}, asked for {_describe(config.to_dict())}): "
            "re-export, or use the folder's own setting"
        )
    if verify_files:
        for entry in engines["files"]:
            path = Path(folder) / entry["file"]
            if not path.is_file() or file_sha256(path) != entry["sha256"]:
                raise EngineMismatchError(
                    f"{path} is missing or changed since export: export the folder again"
                )
    return manifest


def _describe(config: dict[str, Any]) -> str:
    layers = ",".join(str(layer) for layer in config["prune_layers"])
    return f"retention {config['retention']}, tau {config['tau']}, layers {layers}"

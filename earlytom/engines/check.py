"""Refuse engine folders built for another builder, version, GPU or EarlyTom setting (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass

from earlytom.artifact import Artifact, EngineSet
from earlytom.config import EarlyTomConfig
from earlytom.errors import EngineMismatchError


@dataclass(frozen=True)
class RuntimeInfo:
    """What will load the plans: the TensorRT flavour and version, and the GPU's compute capability."""

    builder: str
    version: str
    compute_capability: tuple[int, int] | None  # None: no GPU visible


def check_engines(
    artifact: Artifact, runtime: RuntimeInfo, *, config: EarlyTomConfig | None = None
) -> EngineSet:
    """The engine set of a verified artifact if its plans can run under `runtime`, else a clear error."""
    folder, engines = artifact.folder, artifact.manifest.engines
    if engines is None:
        raise EngineMismatchError(
            f"{folder} has ONNX segments but no TensorRT plans (exported with --skip-build): re-export "
            "without --skip-build, or use --backend onnxruntime"
        )
    built = f"{engines.builder} {engines.version}"
    if engines.builder != runtime.builder:
        raise EngineMismatchError(
            f"engines in {folder} were built with {built} and cannot load in {runtime.builder}: "
            f"re-export with --builder {runtime.builder}"
        )
    if engines.version != runtime.version:
        raise EngineMismatchError(
            f"engines in {folder} were built with {built}, this is {runtime.builder} {runtime.version}: "
            "re-export them with the installed version"
        )
    capability = tuple(engines.compute_capability)
    if runtime.compute_capability is not None and runtime.compute_capability != capability:
        have = "SM{}{}".format(*runtime.compute_capability)
        raise EngineMismatchError(
            f"engines in {folder} target {engines.target} (SM{capability[0]}{capability[1]}) but this GPU "
            f"is {have}: re-export with the matching --target"
        )
    if config is not None and config.config_hash() != artifact.manifest.config_sha256:
        raise EngineMismatchError(
            f"engines in {folder} were exported for another EarlyTom setting "
            f"({_describe(artifact.manifest.config)}, asked for {_describe(config)}): "
            "re-export, or use the folder's own setting"
        )
    return engines


def _describe(config: EarlyTomConfig) -> str:
    layers = ",".join(str(layer) for layer in config.prune_layers)
    return f"retention {config.retention}, tau {config.tau}, layers {layers}"

"""Which TensorRT is installed, and the GPU targets an engine can be built for."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from earlytom.errors import ExportError, MissingDependencyError


@dataclass(frozen=True)
class Target:
    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        major, minor = self.compute_capability
        return f"SM{major}{minor}"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("a100", (8, 0)),
        Target("a10", (8, 6)),
        Target("l40", (8, 9)),
        Target("rtx4090", (8, 9)),
        Target("rtx5090", (12, 0)),
    )
}
BUILDERS = ("tensorrt", "tensorrt_rtx")


@dataclass(frozen=True)
class Builder:
    name: str  # "tensorrt" or "tensorrt_rtx"
    module: ModuleType
    version: str


def target(name: str) -> Target:
    if name not in TARGETS:
        raise ExportError(f"unknown target '{name}': choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def load_builder(preference: str = "auto") -> Builder:
    """Full TensorRT when importable (what A100 users run), else TensorRT-RTX (builds without a GPU)."""
    if preference not in ("auto", *BUILDERS):
        raise ExportError(f"unknown builder '{preference}': choose auto, {' or '.join(BUILDERS)}")
    for name in BUILDERS if preference == "auto" else (preference,):
        module = _import(name)
        if module is not None:
            return Builder(name, module, str(module.__version__))
    if preference == "auto":
        raise MissingDependencyError(
            "no TensorRT builder is installed: install TensorRT-RTX (pip install 'earlytom[rtx]') or "
            "TensorRT >= 10 (pip install 'earlytom[trt]'), or pass --skip-build"
        )
    other = next(name for name in BUILDERS if name != preference)
    module = _import(other)
    installed = (
        f", {NAMES[other]} {module.__version__} is: export with --builder {other} (or auto) to build for it"
        if module is not None
        else ""
    )
    raise MissingDependencyError(
        f"{NAMES[preference]} is not installed{installed}; to use {NAMES[preference]}, pip install "
        f"'earlytom[{EXTRAS[preference]}]'; or export with --skip-build"
    )


NAMES = {"tensorrt": "full TensorRT", "tensorrt_rtx": "TensorRT-RTX"}
EXTRAS = {"tensorrt": "trt", "tensorrt_rtx": "rtx"}


def _import(name: str) -> ModuleType | None:
    try:
        return __import__(name)
    except ImportError:
        return None

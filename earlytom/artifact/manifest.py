"""manifest.json as frozen types: `Manifest` and its entries, read by one checked parser.

`Manifest.from_dict` checks the format version, then every field's presence, type and value (known
precisions, builders and dtypes, sane numbers, file names inside the folder); a malformed manifest
is one ArtifactError naming the field and what to re-export. The rest of the code works on these
types and never indexes raw JSON.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from earlytom.config import EarlyTomConfig
from earlytom.errors import ArtifactError, ConfigError

MANIFEST = "manifest.json"
FORMAT = "earlytom-artifacts/3"
PRECISIONS = ("float16", "float32")
TOKEN_SELECTS = ("plugin", "onnx")
BUILDERS = ("tensorrt", "tensorrt_rtx")
DTYPES = ("float16", "float32", "int64")


class _Malformed(Exception):
    """A field of manifest.json that is missing, mistyped or out of range (becomes an ArtifactError)."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # "float16", "float32", "int64"
    shape: tuple[int | str, ...]  # "frames", "selected", "selected+1" for dynamic dimensions


@dataclass(frozen=True)
class SegmentEntry:
    name: str
    kind: str  # encoder, head, select
    file: str  # relative to the folder
    layers: tuple[int, ...]  # (first, last) encoder layers, () when none
    inputs: tuple[TensorEntry, ...]
    outputs: tuple[TensorEntry, ...]
    sha256: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str
    fingerprint: str  # of the checkpoint's vision weights (earlytom.models.fingerprint)


@dataclass(frozen=True)
class Geometry:
    image_size: int
    tokens_per_frame: int  # S
    pooled_tokens_per_frame: int  # P
    vision_hidden_size: int  # D
    llm_hidden_size: int  # C
    vision_layers: int


@dataclass(frozen=True)
class ValidationSummary:
    passed: bool
    precision: str
    checks: int
    failed: int
    near_tie_flips: int
    min_cosine: float | None
    cases: tuple[str, ...]


@dataclass(frozen=True)
class EngineEntry:
    segment: str
    file: str
    sha256: str
    onnx_sha256: str
    build_seconds: float
    network_layers: dict[str, int]  # layer types after parsing (a plan cannot be inspected without a GPU)
    plugin_layers: int  # 0: TokenSelect runs as standard ops
    needs_plugin: bool  # the plan references EarlyTomTokenSelect: load the plugin library first


@dataclass(frozen=True)
class PluginEntry:
    file: str
    sha256: str
    static_file: str | None = None  # full TensorRT's self-registering twin, for trtexec --staticPlugins
    static_sha256: str | None = None


@dataclass(frozen=True)
class FrameProfile:
    min_frames: int
    opt_frames: int
    max_frames: int


@dataclass(frozen=True)
class EngineSet:
    builder: str  # tensorrt | tensorrt_rtx
    version: str
    target: str
    compute_capability: tuple[int, ...]
    profile: FrameProfile
    timing_cache: str | None
    token_select: str
    plugin: PluginEntry | None
    files: tuple[EngineEntry, ...]

    def entry(self, segment: str) -> EngineEntry:
        return next(e for e in self.files if e.segment == segment)


@dataclass(frozen=True)
class Manifest:
    format: str
    model: ModelEntry
    config: EarlyTomConfig
    config_sha256: str
    precision: str  # float16 | float32
    tie_band: float  # the planner's tie band for this precision (DESIGN §7)
    opset: int
    token_select: str  # plugin | onnx
    geometry: Geometry
    segments: tuple[SegmentEntry, ...]
    versions: dict[str, str | None]
    validation: ValidationSummary
    engines: EngineSet | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["config"] = self.config.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: Path | str = MANIFEST) -> Manifest:
        """A checked manifest; a malformed one is one ArtifactError naming `source` and the field."""
        folder = Path(source).parent
        if not isinstance(data, dict):
            kind = type(data).__name__ if data is not None else "null"
            raise ArtifactError(f"{source} is not a JSON object (it holds a {kind}): {reexport_hint(folder)}")
        if data.get("format") != FORMAT:
            found = f"format {_short(data['format'])}" if "format" in data else "no 'format' field"
            raise ArtifactError(
                f"{source} has {found}, this earlytom reads {FORMAT!r} (another version wrote it?): "
                f"{reexport_hint(folder)}"
            )
        try:
            manifest = _parse(cls, data, "")
            _check_values(manifest)
        except _Malformed as exc:
            raise ArtifactError(f"{source}: field {exc}: {reexport_hint(folder)}") from None
        return manifest


def reexport_hint(folder: Path, manifest: Manifest | None = None) -> str:
    """What to run to replace a broken folder: the export of its recorded setting when it is known."""
    if manifest is None:
        return f"export it again (earlytom-export --out {folder} --force, with the flags it was made with)"
    config, engines = manifest.config, manifest.engines
    flags = ["--model", manifest.model.name, "--retention", str(config.retention), "--tau", str(config.tau),
             "--prune-layers", ",".join(map(str, config.prune_layers))]  # fmt: skip
    if config.max_window != EarlyTomConfig().max_window:
        flags += ["--max-window", str(config.max_window)]
    if not config.drop_last_middle:
        flags.append("--keep-last-middle")
    if manifest.precision == "float32":
        flags.append("--fp32")
    flags += (
        ["--skip-build"] if engines is None else ["--target", engines.target, "--builder", engines.builder]
    )
    flags += ["--token-select", manifest.token_select, "--out", str(folder), "--force"]
    return "export it again: " + shlex.join(["earlytom-export", *flags])


T = TypeVar("T")


def _parse(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from JSON `data`, naming the first missing or mistyped field."""
    if not isinstance(data, dict):
        raise _Malformed(f"'{where or 'root'}' must be an object, not {type(data).__name__}")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            if f.default is not MISSING:
                values[f.name] = f.default
                continue
            raise _Malformed(f"'{name}' is missing")
        values[f.name] = _value(hints[f.name], data[f.name], name)
    return cls(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is EarlyTomConfig:
        try:
            return EarlyTomConfig.from_dict(value)
        except ConfigError as exc:
            raise _Malformed(f"'{where}': {exc}") from exc
    if is_dataclass(hint):
        return _parse(hint, value, where)  # type: ignore[arg-type]
    if args and type(None) in args:  # X | None
        return None if value is None else _value(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Malformed(f"'{where}' must be a list, not {type(value).__name__}")
        return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _Malformed(f"'{where}' must be an object, not {type(value).__name__}")
        return {key: _value(args[1], v, f"{where}.{key}") for key, v in value.items()}
    kinds: tuple[Any, ...] = args if args else (hint,)
    if hint is float:
        kinds = (int, float)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise _Malformed(f"'{where}' has {type(value).__name__} {_short(value)}, expected {expected}")
    return value


def _check_values(manifest: Manifest) -> None:
    """The values a well-typed manifest must still have: known names, sane numbers, plain file names."""
    _one_of("precision", manifest.precision, PRECISIONS)
    _one_of("token_select", manifest.token_select, TOKEN_SELECTS)
    if not math.isfinite(manifest.tie_band) or manifest.tie_band < 0:
        raise _Malformed(f"'tie_band' is {manifest.tie_band}, expected a finite number >= 0")
    for name, size in asdict(manifest.geometry).items():
        if size < 1:
            raise _Malformed(f"'geometry.{name}' is {size}, expected an integer >= 1")
    for i, segment in enumerate(manifest.segments):
        _plain_file(f"segments[{i}].file", segment.file)
        for side in ("inputs", "outputs"):
            for j, tensor in enumerate(getattr(segment, side)):
                _one_of(f"segments[{i}].{side}[{j}].dtype", tensor.dtype, DTYPES)
    engines = manifest.engines
    if engines is None:
        return
    _one_of("engines.builder", engines.builder, BUILDERS)
    _one_of("engines.token_select", engines.token_select, TOKEN_SELECTS)
    if len(engines.compute_capability) != 2:
        raise _Malformed(
            f"'engines.compute_capability' is {list(engines.compute_capability)}, expected [major, minor]"
        )
    frames = engines.profile
    if not 1 <= frames.min_frames <= frames.opt_frames <= frames.max_frames:
        raise _Malformed(f"'engines.profile' is {asdict(frames)}, expected 1 <= min <= opt <= max frames")
    for i, entry in enumerate(engines.files):
        _plain_file(f"engines.files[{i}].file", entry.file)
    plugin = engines.plugin
    if plugin is not None:
        _plain_file("engines.plugin.file", plugin.file)
        if plugin.static_file is not None:
            _plain_file("engines.plugin.static_file", plugin.static_file)
            if plugin.static_sha256 is None:
                raise _Malformed("'engines.plugin.static_sha256' is missing for its static_file")


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _Malformed(f"'{where}' is {_short(value)}, expected {' or '.join(allowed)}")


def _short(value: Any) -> str:
    """A value as it appears in a one-line message: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain_file(where: str, name: str) -> None:
    """A file the manifest vouches for lies inside the folder: relative, no '..', not empty."""
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise _Malformed(f"'{where}' is {_short(name)}, expected a file name inside the folder")

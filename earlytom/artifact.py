"""The exported folder as one typed contract: `Manifest` (manifest.json) and `Artifact` (folder + manifest).

`Artifact.read` is the only reader of manifest.json: it checks the format version, every field's
presence and type (a malformed manifest is one line naming the field), the EarlyTom setting
against its own hash, the declared stage I/O against the code's, and every file the folder holds
(ONNX segments, plans, plugin libraries) against its recorded sha256. The rest of the code works
on these frozen types and never indexes raw JSON. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from earlytom.config import EarlyTomConfig
from earlytom.errors import ArtifactError, ConfigError
from earlytom.models.segments import SegmentSpec, plan_segments

MANIFEST = "manifest.json"
FORMAT = "earlytom-artifacts/2"


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
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ArtifactError(f"{MANIFEST} is not a JSON object: export the folder again")
        if data.get("format") != FORMAT:
            raise ArtifactError(
                f"{MANIFEST} has format {data.get('format')!r}, this earlytom reads {FORMAT!r}: "
                "export the folder again with this version"
            )
        return _parse(cls, data, "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("earlytom", "torch", "transformers", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Artifact:
    """An exported folder and its verified manifest (read once per command)."""

    folder: Path
    manifest: Manifest
    specs: tuple[SegmentSpec, ...] = field(default=(), compare=False)

    @classmethod
    def read(cls, folder: Path, *, verify_files: bool = True) -> Artifact:
        folder = Path(folder)
        path = folder / MANIFEST
        if not folder.exists():
            raise ArtifactError(f"{folder} does not exist: create it with earlytom-export")
        if not folder.is_dir():
            raise ArtifactError(
                f"{folder} is a file, not an artifact folder: pass the folder earlytom-export wrote"
            )
        if not path.is_file():
            raise ArtifactError(
                f"{folder} is not an earlytom artifact folder (no {MANIFEST}): "
                "create one with earlytom-export"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path} is corrupt ({exc}): export the folder again") from exc
        artifact = cls(folder, Manifest.from_dict(data)).checked()
        if verify_files:
            artifact.verify_files()
        return artifact

    def checked(self) -> Artifact:
        """Setting hash and declared stage I/O against the code's; returns self with its specs."""
        manifest = self.manifest
        if manifest.config.config_hash() != manifest.config_sha256:
            raise ArtifactError(
                f"{self.folder / MANIFEST}: the EarlyTom setting does not match its config_sha256 (edited "
                "by hand?): export the folder again"
            )
        specs = plan_segments(manifest.config, manifest.geometry.vision_layers)
        declared = [(s.name, tuple(t.name for t in s.inputs), tuple(t.name for t in s.outputs))
                    for s in manifest.segments]  # fmt: skip
        expected = [(s.name, s.input_names, s.output_names) for s in specs]
        if declared != expected:
            raise ArtifactError(
                f"{self.folder / MANIFEST} declares stages {[d[0] for d in declared]} that this earlytom "
                f"does not run ({[e[0] for e in expected]} expected): export the folder again"
            )
        engines = manifest.engines
        if engines is not None and [e.segment for e in engines.files] != [s.name for s in specs]:
            raise ArtifactError(
                f"{self.folder / MANIFEST} lists plans for {[e.segment for e in engines.files]}, not one per "
                f"stage ({[s.name for s in specs]}): export the folder again"
            )
        return replace(self, specs=specs)

    def files(self) -> list[tuple[str, str]]:
        """(relative path, sha256) of every file the manifest vouches for."""
        listed = [(s.file, s.sha256) for s in self.manifest.segments]
        engines = self.manifest.engines
        if engines is not None:
            listed += [(e.file, e.sha256) for e in engines.files]
            if engines.plugin is not None:
                listed.append((engines.plugin.file, engines.plugin.sha256))
                if engines.plugin.static_file and engines.plugin.static_sha256:
                    listed.append((engines.plugin.static_file, engines.plugin.static_sha256))
        return listed

    def verify_files(self) -> None:
        for relative, digest in self.files():
            path = self.folder / relative
            if not path.is_file():
                raise ArtifactError(f"{path} is missing from the artifact folder: export the folder again")
            if file_sha256(path) != digest:
                raise ArtifactError(
                    f"{path} has changed since export (its sha256 differs from the manifest's): "
                    "export the folder again"
                )

    def path(self, relative: str) -> Path:
        return self.folder / relative

    def segment(self, name: str) -> SegmentEntry:
        return next(s for s in self.manifest.segments if s.name == name)

    def write(self) -> None:
        write_json_atomic(self.folder / MANIFEST, self.manifest.to_dict())


T = TypeVar("T")


def _parse(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from JSON `data`, naming the first missing or mistyped field."""
    if not isinstance(data, dict):
        raise ArtifactError(
            f"{MANIFEST}: field '{where or 'root'}' must be an object: export the folder again"
        )
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            if f.default is not MISSING:
                values[f.name] = f.default
                continue
            raise ArtifactError(f"{MANIFEST}: field '{name}' is missing: export the folder again")
        values[f.name] = _value(hints[f.name], data[f.name], name)
    return cls(**values)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if hint is EarlyTomConfig:
        try:
            return EarlyTomConfig.from_dict(value)
        except ConfigError as exc:
            raise ArtifactError(f"{MANIFEST}: field '{where}': {exc}") from exc
    if is_dataclass(hint):
        return _parse(hint, value, where)  # type: ignore[arg-type]
    if args and type(None) in args:  # X | None
        return None if value is None else _value(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ArtifactError(f"{MANIFEST}: field '{where}' must be a list: export the folder again")
        item = args[0]
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ArtifactError(f"{MANIFEST}: field '{where}' must be an object: export the folder again")
        return dict(value)
    kinds: tuple[Any, ...] = args if args else (hint,)
    if hint is float:
        kinds = (int, float)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ArtifactError(
            f"{MANIFEST}: field '{where}' has {type(value).__name__} {value!r}, expected "
            f"{' or '.join(k.__name__ for k in kinds)}: export the folder again"
        )
    return value

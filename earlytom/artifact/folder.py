"""The exported folder: `Artifact` (folder + verified manifest), file hashes and atomic writes.

`Artifact.read` is the only reader of manifest.json: after the manifest's own checks it compares
the EarlyTom setting with its hash and the declared stage I/O with the code's, and hashes every
file the folder holds (ONNX segments, plans, plugin libraries). Executors take a file's bytes from
`Artifact.verified_bytes`, hashed as read, so a file changed after the check never runs either.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from earlytom.artifact.manifest import MANIFEST, Manifest, SegmentEntry, reexport_hint
from earlytom.errors import ArtifactError, ConfigError, InputError
from earlytom.models.segments import ACTIVATION, SegmentSpec, plan_segments

R = TypeVar("R")


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


def require_writable_folder(folder: Path, option: str = "--out", *, beside: bool = False) -> None:
    """Fail before any work when `folder` cannot be created or written in (`beside`: when it cannot
    be created or replaced by a rename in its parent); leaves nothing behind."""
    folder = Path(folder).absolute()
    existing = folder
    try:  # a folder that cannot even be looked into (no search permission) raises here too
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{option} {folder} is a file, not a folder: pass a folder path")
        start = folder.parent if beside else folder
        existing = next(p for p in (start, *start.parents) if p.exists())
        if not existing.is_dir():
            raise InputError(f"{option} {folder} is inside {existing}, which is a file: pass a folder path")
        os.rmdir(tempfile.mkdtemp(prefix=".earlytom-write-check-", dir=existing))
    except OSError as exc:
        raise InputError(
            f"{option} {folder} cannot be written: {existing} refuses new files ({exc.strerror or exc})"
        ) from exc


@dataclass(frozen=True)
class Artifact:
    """An exported folder and its verified manifest (read once per command)."""

    folder: Path
    manifest: Manifest
    specs: tuple[SegmentSpec, ...] = field(default=(), compare=False)

    @classmethod
    def read(cls, folder: Path, *, verify_files: bool = True) -> Artifact:
        """The folder's manifest, checked, and (unless told not to) every file against its hash."""
        folder = Path(folder)
        path = folder / MANIFEST
        try:  # stat() itself fails in a folder that cannot be looked into
            if not folder.exists():
                raise ArtifactError(f"{folder} does not exist: create it with earlytom-export --out {folder}")
            if not folder.is_dir():
                raise ArtifactError(
                    f"{folder} is a file, not a folder: pass the folder earlytom-export wrote"
                )
            if not path.exists():
                raise ArtifactError(
                    f"{folder} is a folder without {MANIFEST}, not one earlytom-export wrote: create one "
                    f"with earlytom-export --out {folder}"
                )
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise ArtifactError(f"{path} cannot be read ({exc.strerror or exc})") from exc
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested beyond reason
            reason = str(exc).splitlines()[0][:120]
            raise ArtifactError(f"{path} is not valid JSON ({reason}): {reexport_hint(folder)}") from exc
        artifact = cls(folder, Manifest.from_dict(data, source=path)).checked()
        if verify_files:
            artifact.verify_files()
        return artifact

    def checked(self) -> Artifact:
        """Setting hash and declared stage I/O against the code's; returns self with its specs."""
        manifest, source = self.manifest, self.folder / MANIFEST
        if manifest.config.config_hash() != manifest.config_sha256:
            raise ArtifactError(
                f"{source}: the EarlyTom setting does not match its config_sha256 (edited by hand?): "
                f"{reexport_hint(self.folder)} with the setting you want"
            )
        hint = reexport_hint(self.folder, manifest)
        try:
            manifest.config.check_model(vision_layers=manifest.geometry.vision_layers, language_layers=None)
        except ConfigError as exc:
            raise ArtifactError(f"{source}: field 'config': {exc}: {hint}") from None
        specs = plan_segments(manifest.config, manifest.geometry.vision_layers)
        names = [s.name for s in specs]
        if [s.name for s in manifest.segments] != names:
            raise ArtifactError(
                f"{source} declares stages {[s.name for s in manifest.segments]} that this earlytom does "
                f"not run ({names} expected): {hint}"
            )
        for i, (entry, spec) in enumerate(zip(manifest.segments, specs, strict=True)):
            declared, expected = _declared(entry), _expected(spec, manifest.precision)
            if declared != expected:
                raise ArtifactError(
                    f"{source}: field 'segments[{i}]' declares {entry.name} as {declared}, this earlytom "
                    f"runs {expected}: {hint}"
                )
        engines = manifest.engines
        if engines is not None and [e.segment for e in engines.files] != names:
            raise ArtifactError(
                f"{source} lists plans for {[e.segment for e in engines.files]}, not one per stage "
                f"({names}): {hint}"
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
        """Every file the manifest vouches for is there and has its recorded sha256."""
        for relative, _ in self.files():
            self._compare(relative, self._open(relative, file_sha256))

    def verified_bytes(self, relative: str) -> bytes:
        """A vouched-for file's bytes, hashed as read: the bytes that run are the bytes checked."""
        data = self._open(relative, Path.read_bytes)
        self._compare(relative, hashlib.sha256(data).hexdigest())
        return data

    def _open(self, relative: str, read: Callable[[Path], R]) -> R:
        path = self.path(relative)
        hint = reexport_hint(self.folder, self.manifest)
        if not path.is_file():
            what = "is not a file" if path.exists() else "is missing from the artifact folder"
            raise ArtifactError(f"{path} {what}: {hint}")
        try:
            return read(path)
        except OSError as exc:
            raise ArtifactError(f"{path} cannot be read ({exc.strerror or exc}): {hint}") from exc

    def _compare(self, relative: str, digest: str) -> None:
        if digest != dict(self.files()).get(relative):
            raise ArtifactError(
                f"{self.path(relative)} has changed since export (its sha256 differs from the manifest's): "
                f"{reexport_hint(self.folder, self.manifest)}"
            )

    def path(self, relative: str) -> Path:
        return self.folder / relative

    def segment(self, name: str) -> SegmentEntry:
        return next(s for s in self.manifest.segments if s.name == name)

    def write(self) -> None:
        write_json_atomic(self.folder / MANIFEST, self.manifest.to_dict())


def _declared(entry: SegmentEntry) -> str:
    """What a manifest says a stage is: kind, layers, and each tensor's name, dtype and rank."""
    tensors = [[(t.name, t.dtype, len(t.shape)) for t in side] for side in (entry.inputs, entry.outputs)]
    return _stage(entry.kind, list(entry.layers), *tensors)


def _expected(spec: SegmentSpec, precision: str) -> str:
    """What this earlytom runs as that stage, for a folder of `precision`."""
    tensors = [[(t.name, precision if t.dtype == ACTIVATION else t.dtype, t.rank) for t in side]
               for side in (spec.inputs, spec.outputs)]  # fmt: skip
    return _stage(spec.kind, list(spec.layers or ()), *tensors)


def _stage(kind: str, layers: list[int], *sides: list[tuple[str, str, int]]) -> str:
    inputs, outputs = (
        ", ".join(f"{name} {dtype} rank {rank}" for name, dtype, rank in side) for side in sides
    )
    return f"{kind} with layers {layers}, ({inputs}) -> ({outputs})"

"""manifest.json and the atomic output folder (temp dir + rename; --force to replace)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from earlytom.config import EarlyTomConfig
from earlytom.errors import EngineMismatchError, ExportError
from earlytom.models.segments import SegmentSpec

MANIFEST = "manifest.json"
FORMAT = "earlytom-artifacts/1"


@contextlib.contextmanager
def staged_output(out_dir: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`; it becomes `out_dir` only if the block succeeds."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not force:
        raise ExportError(f"output folder {out_dir} already exists: pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield stage
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(stage, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out_dir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise EngineMismatchError(
            f"{folder} is not an earlytom artifact folder (no {MANIFEST}): create one with earlytom-export"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineMismatchError(f"{path} is corrupt ({exc}): export the folder again") from exc
    if manifest.get("format") != FORMAT:
        raise EngineMismatchError(
            f"{path} has format {manifest.get('format')!r}, this earlytom reads {FORMAT!r}: export again"
        )
    return manifest


def config_sha256(config: EarlyTomConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("earlytom", "torch", "transformers", "onnx", "onnxruntime", "onnxscript"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def artifact_config(manifest: dict[str, Any]) -> EarlyTomConfig:
    """The EarlyTom setting a folder was exported with."""
    fields = dict(manifest["earlytom_config"])
    fields["prune_layers"] = tuple(fields["prune_layers"])
    return EarlyTomConfig(**fields)


def segment_specs(manifest: dict[str, Any]) -> list[SegmentSpec]:
    """The segments of a folder, as the chain runs them (names, layers, inputs, outputs)."""
    return [
        SegmentSpec(
            name=s["name"],
            first_layer=s["layers"][0] if s["layers"] else 0,
            stop_layer=s["layers"][1] + 1 if s["layers"] else 0,
            inputs=tuple(t["name"] for t in s["inputs"]),
            outputs=tuple(t["name"] for t in s["outputs"]),
        )
        for s in manifest["segments"]
    ]

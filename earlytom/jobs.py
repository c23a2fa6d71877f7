"""The `earlytom-export` job composed: export_segments -> build_engines -> manifest, atomically.

Nothing appears at the output folder unless every step succeeds: the work happens in a staging
folder beside it, renamed only at the end; an existing folder is replaced only with `force`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from earlytom.artifact import Artifact
from earlytom.engines.build import BuildConfig, build_engines
from earlytom.errors import ExportError
from earlytom.exporter.export import ExportSpec, export_segments

Progress = Callable[[str], None]


def run_export(
    spec: ExportSpec,
    out_dir: Path,
    build: BuildConfig | None,
    *,
    force: bool = False,
    plugin_library: Path | None = None,
    progress: Progress = lambda _: None,
) -> Artifact:
    """ONNX stages + validation.json (+ plans unless `build` is None) + manifest.json in `out_dir`."""
    if build is not None and spec.token_select == "plugin":
        require_plugin_library(plugin_library)  # fail before minutes of export, not after
    with staged_output(out_dir, force=force) as stage:
        plugin = spec.token_select == "plugin"
        progress(f"TokenSelect as {'the EarlyTomTokenSelect plugin' if plugin else 'standard ONNX ops'}")
        artifact = export_segments(spec, stage, progress)
        if build is not None:
            artifact = build_engines(artifact, build, plugin_library=plugin_library, progress=progress)
        artifact.write()
    progress(f"wrote {out_dir}")
    # The files were hashed as they were written; the renamed folder needs no second pass over them.
    return replace(artifact, folder=out_dir.resolve())


def resolve_token_select(mode: str, plugin_library: Path | None) -> str:
    """auto -> plugin when a plugin library is at hand (given, or built by `earlytom build-plugins`)."""
    from earlytom.trt_plugins.library import find_plugin_library

    if mode != "auto":
        return mode
    return "plugin" if find_plugin_library(plugin_library) is not None else "onnx"


def require_plugin_library(plugin_library: Path | None) -> None:
    from earlytom.trt_plugins.library import find_plugin_library

    if find_plugin_library(plugin_library) is None:
        raise ExportError(
            "--token-select plugin needs the EarlyTomTokenSelect plugin library: run "
            "'earlytom build-plugins' first, or export with --token-select onnx"
        )


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

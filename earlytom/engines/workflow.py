"""export_artifacts: the whole `earlytom-export` job, written to its folder atomically."""

from __future__ import annotations

from pathlib import Path

from earlytom.engines.build import BuildConfig, Progress, build_engines
from earlytom.exporter.export import ExportSpec, export_onnx
from earlytom.exporter.manifest import MANIFEST, staged_output, write_json_atomic


def export_artifacts(
    spec: ExportSpec,
    out_dir: Path,
    build: BuildConfig | None,
    *,
    force: bool = False,
    plugin_library: Path | None = None,
    progress: Progress = lambda _: None,
) -> Path:
    """ONNX segments + validation.json (+ plans unless `build` is None) + manifest.json in `out_dir`.

    Nothing appears at `out_dir` unless every step succeeds; an existing folder is replaced only
    with `force`, and only once the new one is complete.
    """
    if build is not None and spec.token_select == "plugin":
        _require_plugin_library(plugin_library)  # fail before minutes of export, not after
    with staged_output(out_dir, force=force) as stage:
        plugin = spec.token_select == "plugin"
        progress(f"TokenSelect as {'the EarlyTomTokenSelect plugin' if plugin else 'standard ONNX ops'}")
        manifest = export_onnx(spec, stage, progress)
        if build is not None:
            manifest["engines"] = build_engines(
                stage,
                manifest["segments"],
                build,
                retention=spec.config.retention,
                pooled_tokens_per_frame=manifest["geometry"]["pooled_tokens_per_frame"],
                token_select=spec.token_select,
                plugin_library=plugin_library,
                progress=progress,
            )
        write_json_atomic(stage / MANIFEST, manifest)
    progress(f"wrote {out_dir}")
    return out_dir.resolve()


def resolve_token_select(mode: str, plugin_library: Path | None) -> str:
    """auto -> plugin when a plugin library is at hand (given, or built by `earlytom build-plugins`)."""
    from earlytom.trt_plugins.library import find_plugin_library

    if mode != "auto":
        return mode
    return "plugin" if find_plugin_library(plugin_library) is not None else "onnx"


def _require_plugin_library(plugin_library: Path | None) -> None:
    from earlytom.errors import ExportError
    from earlytom.trt_plugins.library import find_plugin_library

    if find_plugin_library(plugin_library) is None:
        raise ExportError(
            "--token-select plugin needs the EarlyTomTokenSelect plugin library: run "
            "'earlytom build-plugins' first, or export with --token-select onnx"
        )

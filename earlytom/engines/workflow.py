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
    progress: Progress = lambda _: None,
) -> Path:
    """ONNX segments + validation.json (+ plans unless `build` is None) + manifest.json in `out_dir`.

    Nothing appears at `out_dir` unless every step succeeds; an existing folder is replaced only
    with `force`, and only once the new one is complete.
    """
    with staged_output(out_dir, force=force) as stage:
        manifest = export_onnx(spec, stage, progress)
        if build is not None:
            manifest["engines"] = build_engines(
                stage,
                manifest["segments"],
                build,
                retention=spec.config.retention,
                pooled_tokens_per_frame=manifest["geometry"]["pooled_tokens_per_frame"],
                progress=progress,
            )
        write_json_atomic(stage / MANIFEST, manifest)
    progress(f"wrote {out_dir}")
    return out_dir.resolve()

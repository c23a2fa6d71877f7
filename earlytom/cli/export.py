"""`earlytom-export`: the compressing vision encoder -> validated ONNX segments and TensorRT plans."""

from __future__ import annotations

from pathlib import Path

import click

from earlytom.cli.common import friendly_errors, parse_layers, progress
from earlytom.config import DEFAULT_RETENTION, DEFAULT_TASK, PRESETS, build_config


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model",
    default="tiny",
    show_default=True,
    help="tiny, llava-ov-0.5b, llava-ov-7b (local weights), or a checkpoint folder. Only the vision "
    "tower, projector and newline are loaded.",
)
@click.option("--random-weights", is_flag=True, help="Real 0.5b/7b architecture with random weights.")
@click.option(
    "--preset", "task", default=DEFAULT_TASK, show_default=True, type=click.Choice(list(PRESETS)),
    help="Which benchmark's tuned (tau, prune layers) to use.",
)  # fmt: skip
@click.option(
    "--retention", default=DEFAULT_RETENTION, show_default=True, type=float, help="Visual tokens kept."
)
@click.option("--tau", type=float, help="Override the preset's segmentation threshold.")
@click.option("--prune-layers", help="Override the preset's prune layers, e.g. 10,21,23.")
@click.option("--keep-last-middle", is_flag=True, help="Keep the middle frame the released code drops.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder.  [default: engines/<model>]")
@click.option(
    "--target", default="a100", show_default=True,
    help="GPU the plans are built for: a100 (sm80), a10 (sm86), l40 / rtx4090 (sm89), rtx5090 (sm120).",
)  # fmt: skip
@click.option(
    "--builder", default="auto", show_default=True, type=click.Choice(["auto", "tensorrt", "tensorrt_rtx"]),
    help="auto: full TensorRT when installed, else TensorRT-RTX (ahead of time, no GPU needed).",
)  # fmt: skip
@click.option(
    "--frames-profile", default="1,32,64", show_default=True, help="Engine profile: min,opt,max frames."
)
@click.option(
    "--token-select", default="auto", show_default=True, type=click.Choice(["auto", "plugin", "onnx"]),
    help="plugin: TokenSelect is one node TensorRT runs as the EarlyTomTokenSelect CUDA plugin "
    "(see 'earlytom build-plugins'); onnx: standard ops only; auto: plugin when a plugin library is built.",
)  # fmt: skip
@click.option(
    "--plugin-library", type=click.Path(path_type=Path),
    help="libearlytom_plugins.so to build with.  [default: the one 'earlytom build-plugins' wrote]",
)  # fmt: skip
@click.option("--skip-build", is_flag=True, help="Write and validate the ONNX segments only.")
@click.option("--fp32", is_flag=True, help="Export FP32 graphs (validated for identical token selection).")
@click.option(
    "--validation-video", type=click.Path(path_type=Path),
    help="Real video for ONNX Runtime validation (random frames are always checked too).",
)  # fmt: skip
@click.option(
    "--validation-frames", default=8, show_default=True, type=int, help="Frames per validation case."
)
@click.option(
    "--force", is_flag=True, help="Replace an existing output folder (only once the new one is complete)."
)
@friendly_errors
def export(
    model: str, random_weights: bool, task: str, retention: float, tau: float | None,
    prune_layers: str | None, keep_last_middle: bool, out: Path | None, target: str, builder: str,
    frames_profile: str, token_select: str, plugin_library: Path | None, skip_build: bool, fp32: bool,
    validation_video: Path | None, validation_frames: int, force: bool,
) -> None:  # fmt: skip
    """Export EarlyTom's compressing vision encoder: FP16 ONNX segments split at the prune layers, a
    final segment with projector, pooling and the TokenSelect op, each validated in ONNX Runtime
    against PyTorch, and TensorRT plans of every segment; manifest.json describes them all."""
    from earlytom.engines.build import BuildConfig
    from earlytom.engines.workflow import export_artifacts, resolve_token_select
    from earlytom.exporter.export import ExportSpec

    config = build_config(
        task,
        retention,
        tau=tau,
        prune_layers=parse_layers(prune_layers),
        drop_last_middle=not keep_last_middle,
    )
    build = None if skip_build else BuildConfig(target, *_profile(frames_profile), builder=builder)
    spec = ExportSpec(
        model=model,
        config=config,
        random_weights=random_weights,
        precision="float32" if fp32 else "float16",
        validation_video=validation_video,
        validation_frames=validation_frames,
        token_select=resolve_token_select(token_select, plugin_library),
    )
    out_dir = out or Path("engines") / Path(model).name
    export_artifacts(spec, out_dir, build, force=force, plugin_library=plugin_library, progress=progress)


def _profile(text: str) -> tuple[int, int, int]:
    from earlytom.errors import ExportError

    try:
        low, opt, high = (int(part) for part in text.split(","))
    except ValueError as exc:
        raise ExportError(
            f"--frames-profile '{text}' must be three integers min,opt,max (e.g. 1,32,64)"
        ) from exc
    return low, opt, high


def main() -> None:
    export(prog_name="earlytom-export")


if __name__ == "__main__":
    main()

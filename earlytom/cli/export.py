"""`earlytom-export`: the compressing vision encoder -> validated ONNX segments and TensorRT plans."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from earlytom.cli.common import Command, friendly_errors, progress
from earlytom.cli.options import (
    ModelOptions,
    SettingOptions,
    allow_partial_flag,
    model_options,
    plain,
    setting_options,
)
from earlytom.cli.paramtypes import Count, VideoPath
from earlytom.models.context import MAX_FRAMES


@click.command(cls=Command)
@model_options()
@setting_options()
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
    "--validation-video", type=VideoPath(),
    help="Real video for ONNX Runtime validation (random frames are always checked too); 'demo' is the "
    "project's demo clip.",
)  # fmt: skip
@click.option(
    "--validation-frames", default=8, show_default=True, type=Count(2, MAX_FRAMES),
    help="Frames per validation case.",
)  # fmt: skip
@plain(allow_partial_flag())  # for --validation-video
@click.option(
    "--force", is_flag=True, help="Replace an existing output folder (only once the new one is complete)."
)
@friendly_errors
def export(
    model: ModelOptions, setting: SettingOptions, out: Path | None, target: str, builder: str,
    frames_profile: str, token_select: str, plugin_library: Path | None, skip_build: bool, fp32: bool,
    validation_video: Path | None, validation_frames: int, allow_partial: bool, force: bool,
) -> None:  # fmt: skip
    """Export EarlyTom's compressing vision encoder: FP16 ONNX stages (encoder segments split at the
    prune layers, a head with the remaining layers and the projector, a select stage with pooling,
    the TokenSelect op and the newline), each validated in ONNX Runtime against PyTorch, and
    TensorRT plans of every stage; manifest.json describes and vouches for them all. Only the
    vision tower, projector and newline of --model are loaded."""
    from earlytom.artifact import require_writable_folder

    out_dir = out or Path("engines") / Path(model.model).name
    require_writable_folder(out_dir, "--out", beside=True)  # before the imports and work below

    from earlytom.engines.build import BuildConfig
    from earlytom.exporter.export import ExportSpec
    from earlytom.jobs import Interrupted, resolve_token_select, run_export
    from earlytom.models.registry import family_of

    config = setting.config(family_of(model.model).name)
    build = None if skip_build else BuildConfig(target, *_profile(frames_profile), builder=builder)
    spec = ExportSpec(
        model=model.model,
        config=config,
        random_weights=model.random_weights,
        precision="float32" if fp32 else "float16",
        validation_video=validation_video,
        validation_frames=validation_frames,
        token_select=resolve_token_select(token_select, plugin_library),
        allow_partial_video=allow_partial,
    )
    try:
        run_export(spec, out_dir, build, force=force, plugin_library=plugin_library, progress=progress)
    except Interrupted as stop:
        click.echo(f"error: export {stop}: nothing was written to {out_dir}", err=True)
        sys.exit(128 + stop.signum)


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

"""`earlytom profile`: per-engine latency at the shapes a real video produces."""

from __future__ import annotations

from pathlib import Path

import click

from earlytom.cli.common import Command, friendly_errors, progress
from earlytom.cli.options import VideoOptions, video_options, warmup_option
from earlytom.cli.paramtypes import Count


@click.command(cls=Command)
@click.argument("folder", type=click.Path(path_type=Path))
@video_options(allow_partial=True)
@click.option(
    "--print-commands", is_flag=True,
    help="Only print the trtexec (tensorrt_rtx for TensorRT-RTX plans) commands, one per plan.",
)  # fmt: skip
@click.option("--iterations", default=50, show_default=True, type=Count(1), help="Timed runs per plan.")
@warmup_option(10)
@click.option(
    "--out", type=click.Path(path_type=Path),
    help="Folder for profile.json, recorded inputs and trtexec times.  [default: FOLDER-profile, "
    "beside FOLDER]",
)  # fmt: skip
@friendly_errors
def profile(
    folder: Path, video: VideoOptions, print_commands: bool, iterations: int, warmup: int, out: Path | None
) -> None:
    """Run the exported segments once on --video to record each plan's shapes, then time every plan:
    with trtexec when it is on PATH, else with CUDA events from Python (--warmup untimed runs first).
    Prints segment, frames and ms p50/p90, and writes profile.json (only --out is written to, and
    only once the folder, its plans and a timing tool or GPU are found)."""
    from earlytom.engines.profile import default_profile_folder, profile_artifacts

    out_dir = out or default_profile_folder(folder)
    report = profile_artifacts(
        folder, video.video, out_dir=out_dir, num_frames=video.frames or _family_frames(folder),
        iterations=iterations, warmup=warmup,
        commands_only=print_commands, allow_partial=video.allow_partial, progress=progress,
    )  # fmt: skip
    if print_commands:
        for command in report["commands"]:
            click.echo(command)
        return
    click.echo(f"{'segment':<10} {'frames':>6} {'p50 ms':>9} {'p90 ms':>9}   ({report['method']})")
    for row in report["segments"]:
        click.echo(f"{row['segment']:<10} {row['frames']:>6} {row['p50_ms']:>9.3f} {row['p90_ms']:>9.3f}")
    click.echo(f"wrote {out_dir / 'profile.json'}")


def _family_frames(folder: Path) -> int:
    """The frame count of the exported model's family (32 when the folder does not say)."""
    import json

    from earlytom.errors import EarlyTomError
    from earlytom.models.registry import family_of

    try:  # the folder is verified by profile_artifacts; here only its model's name is read
        return family_of(json.loads((folder / "manifest.json").read_text())["model"]["name"]).frames
    except (OSError, ValueError, KeyError, TypeError, EarlyTomError):
        return 32

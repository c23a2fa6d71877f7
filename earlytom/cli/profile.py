"""`earlytom profile`: per-engine latency at the shapes a real video produces."""

from __future__ import annotations

import json
from pathlib import Path

import click

from earlytom.cli.common import friendly_errors, progress


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--video", required=True, type=click.Path(path_type=Path), help="Video whose shapes to profile at."
)
@click.option("--frames", default=32, show_default=True, type=int, help="Frames sampled from the video.")
@click.option(
    "--print-commands", is_flag=True,
    help="Only print the trtexec (tensorrt_rtx for TensorRT-RTX plans) commands, one per plan.",
)  # fmt: skip
@click.option("--iterations", default=50, show_default=True, type=int, help="Timed runs per plan.")
@click.option("--warmup", default=10, show_default=True, type=int, help="Untimed runs first (Python timing).")
@click.option(
    "--out", type=click.Path(path_type=Path),
    help="Folder for profile.json, recorded inputs and trtexec times.  [default: FOLDER/profile]",
)  # fmt: skip
@friendly_errors
def profile(
    folder: Path,
    video: Path,
    frames: int,
    print_commands: bool,
    iterations: int,
    warmup: int,
    out: Path | None,
) -> None:
    """Run the exported segments once on VIDEO to record each plan's shapes, then time every plan:
    with trtexec when it is on PATH, else with CUDA events from Python. Prints segment, frames and
    ms p50/p90, and writes profile.json."""
    from earlytom.engines.profile import profile_artifacts
    from earlytom.errors import InputError

    if iterations < 1 or warmup < 0 or frames < 1:
        raise InputError("--iterations and --frames must be >= 1 and --warmup >= 0")
    out_dir = out or folder / "profile"
    report = profile_artifacts(
        folder, video, out_dir=out_dir, num_frames=frames, iterations=iterations, warmup=warmup,
        commands_only=print_commands, progress=progress,
    )  # fmt: skip
    if print_commands:
        for command in report["commands"]:
            click.echo(command)
        return
    (out_dir / "profile.json").write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"{'segment':<10} {'frames':>6} {'p50 ms':>9} {'p90 ms':>9}   ({report['method']})")
    for row in report["segments"]:
        click.echo(f"{row['segment']:<10} {row['frames']:>6} {row['p50_ms']:>9.3f} {row['p90_ms']:>9.3f}")
    click.echo(f"wrote {out_dir / 'profile.json'}")

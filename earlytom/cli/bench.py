"""`earlytom bench`: TTFT of the stock model against EarlyTom at several retentions, one model load."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from earlytom.cli.common import Command, friendly_errors, parse_list, progress
from earlytom.cli.options import (
    RETENTIONS,
    DeviceOptions,
    ModelOptions,
    SweepOptions,
    VideoOptions,
    backend_option,
    device_options,
    model_options,
    prompt_option,
    runs_option,
    sweep_options,
    video_options,
    warmup_option,
)


@click.command(name="bench", cls=Command)
@model_options()
@video_options(allow_partial=True)
@sweep_options()
@backend_option("torch")
@device_options()
@runs_option(5)
@warmup_option(1)
@prompt_option("Describe the video.")
@click.option(
    "--post-encoder", is_flag=True,
    help="Also time the post-encoder baseline at each retention: the stock encoder, then per-frame "
    "top-k by last-layer received attention, same language-model side.",
)  # fmt: skip
@click.option(
    "--out", default=Path("benchmarks/results"), show_default=True, type=click.Path(path_type=Path),
    help="Folder for <device>-<model>-<date>.json and .png.",
)  # fmt: skip
@friendly_errors
def bench(
    model: ModelOptions, video: VideoOptions, sweep: SweepOptions, backend: str, device: DeviceOptions,
    runs: int, warmup: int, prompt: str, post_encoder: bool, out: Path,
) -> None:  # fmt: skip
    """Time TTFT (vision, token processing, LLM prefill, other) of the stock model and of EarlyTom
    at each retention on the same weights, device and frames; print a table, write JSON and a chart.
    The video is decoded once; each setting gets --warmup untimed runs, then --runs timed ones."""
    from earlytom.artifact import require_writable_folder

    # Fail before a run that can take minutes: bad numbers, or no way to draw the chart at the end.
    from earlytom.models.registry import family_of
    from earlytom.runtime.bench import check_bench_inputs, run_bench
    from earlytom.runtime.bench_report import format_table, require_matplotlib, write_results

    frames = video.count(model.model)
    check_bench_inputs(
        sweep.retentions, task=sweep.task, backend=backend, frames=frames, runs=runs, warmup=warmup,
        family=family_of(model.model).name,
    )  # fmt: skip
    require_matplotlib()
    require_writable_folder(out, "--out")  # the results are written only after the whole run
    report = run_bench(
        model.model, video.video, sweep.retentions, task=sweep.task, backend=backend, device=device.device,
        dtype=device.torch_dtype(), random_weights=model.random_weights, num_frames=frames, runs=runs,
        warmup=warmup, prompt=prompt, progress=progress, post_encoder=post_encoder,
        allow_partial=video.allow_partial,
        command=command_line(model, video, sweep, backend, device, runs, warmup, prompt, post_encoder, out),
    )  # fmt: skip
    click.echo(format_table(report))
    json_path, png_path = write_results(report, out)
    click.echo(f"wrote {json_path}")
    click.echo(f"wrote {png_path}")


def command_line(
    model: ModelOptions, video: VideoOptions, sweep: SweepOptions, backend: str, device: DeviceOptions,
    runs: int, warmup: int, prompt: str, post_encoder: bool, out: Path,
) -> str:  # fmt: skip
    """The command that reproduces this benchmark, every setting spelled out (recorded in the JSON)."""
    return shlex.join([
        "earlytom", "bench", "--model", model.model, *(["--random-weights"] if model.random_weights else []),
        "--video", str(video.video), "--frames", str(video.count(model.model)),
        *(["--allow-partial-video"] if video.allow_partial else []),
        *(["--preset", sweep.task] if sweep.task else []),
        "--retention", ",".join(map(str, sweep.retentions)), "--backend", backend,
        "--device", device.device, "--dtype", device.dtype, "--runs", str(runs), "--warmup", str(warmup),
        "--prompt", prompt, *(["--post-encoder"] if post_encoder else []), "--out", str(out),
    ])  # fmt: skip


def parse_retentions(text: str) -> tuple[float, ...]:
    """A --retention list as `bench` reads it (for scripts that take the same flag)."""
    return parse_list(text, float, option="--retention", what=RETENTIONS)

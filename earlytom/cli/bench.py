"""`earlytom bench`: TTFT of the stock model against EarlyTom at several retentions, one model load."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from earlytom.cli.common import DTYPES, friendly_errors, parse_list, progress
from earlytom.config import DEFAULT_TASK, PRESETS


@click.command(name="bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model", default="tiny", show_default=True,
    help="tiny, llava-ov-0.5b, llava-ov-7b (local weights), or a checkpoint folder.",
)  # fmt: skip
@click.option("--video", required=True, help="Video file every setting runs on (decoded once).")
@click.option(
    "--retention", "retentions", default="0.1,0.15,0.2,0.25", show_default=True,
    help="Comma-separated fractions of visual tokens kept, one EarlyTom setting each.",
)  # fmt: skip
@click.option(
    "--preset", "task", default=DEFAULT_TASK, show_default=True, type=click.Choice(list(PRESETS)),
    help="Which benchmark's tuned (tau, prune layers) to use.",
)  # fmt: skip
@click.option("--backend", default="torch", show_default=True, help="Vision path backend (torch).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype", default="auto", show_default=True, type=click.Choice(DTYPES),
    help="auto: float16 on CUDA, float32 on CPU.",
)  # fmt: skip
@click.option(
    "--random-weights", is_flag=True, help="Real 0.5b/7b architecture with random weights (timing only)."
)
@click.option("--frames", default=32, show_default=True, type=int, help="Frames sampled from the video.")
@click.option("--runs", default=5, show_default=True, type=int, help="Timed runs per setting.")
@click.option("--warmup", default=1, show_default=True, type=int, help="Untimed runs per setting first.")
@click.option("--prompt", default="Describe the video.", show_default=True, help="Text prompt.")
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
    model: str, video: str, retentions: str, task: str, backend: str, device: str, dtype: str,
    random_weights: bool, frames: int, runs: int, warmup: int, prompt: str, post_encoder: bool, out: Path,
) -> None:  # fmt: skip
    """Time TTFT (vision, token processing, LLM prefill, other) of the stock model and of EarlyTom
    at each retention on the same weights, device and frames; print a table, write JSON and a chart."""
    import torch

    from earlytom.runtime.bench import check_bench_inputs, run_bench
    from earlytom.runtime.bench_report import format_table, require_matplotlib, write_results

    ratios = parse_retentions(retentions)
    # Fail before a run that can take minutes: bad numbers, or no way to draw the chart at the end.
    check_bench_inputs(ratios, task=task, backend=backend, frames=frames, runs=runs, warmup=warmup)
    require_matplotlib()
    command = shlex.join([
        "earlytom", "bench", "--model", model, "--video", video, "--retention", retentions,
        "--preset", task, "--backend", backend, "--device", device, "--dtype", dtype,
        *(["--random-weights"] if random_weights else []), "--frames", str(frames), "--runs", str(runs),
        "--warmup", str(warmup), "--prompt", prompt, *(["--post-encoder"] if post_encoder else []),
        "--out", str(out),
    ])  # fmt: skip
    report = run_bench(
        model, video, ratios, task=task, backend=backend, device=device,
        dtype=None if dtype == "auto" else getattr(torch, dtype), random_weights=random_weights,
        num_frames=frames, runs=runs, warmup=warmup, prompt=prompt, command=command, progress=progress,
        post_encoder=post_encoder,
    )  # fmt: skip
    click.echo(format_table(report))
    json_path, png_path = write_results(report, out)
    click.echo(f"wrote {json_path}")
    click.echo(f"wrote {png_path}")


def parse_retentions(text: str) -> tuple[float, ...]:
    return parse_list(text, float, option="--retention", what="fractions, e.g. 0.1,0.15,0.2,0.25")

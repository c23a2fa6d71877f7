"""`earlytom` command line: parses options and calls the library; user errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from earlytom.cli.common import DTYPES, friendly_errors, parse_layers, progress
from earlytom.config import DEFAULT_RETENTION, DEFAULT_TASK, PRESETS, EarlyTomConfig, build_config
from earlytom.errors import InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="earlytom")
def cli() -> None:
    """EarlyTom: visual token compression inside the vision encoder of Video-LLMs."""


@cli.command()
@click.option(
    "--model",
    default="tiny",
    show_default=True,
    help="tiny, llava-ov-0.5b, llava-ov-7b (local weights), or a checkpoint folder.",
)
@click.option(
    "--random-weights", is_flag=True, help="Real 0.5b/7b architecture with random weights (timing only)."
)
@click.option("--video", required=True, help="Video file to answer about.")
@click.option("--prompt", required=True, help="Question or instruction about the video.")
@click.option(
    "--preset",
    "task",
    default=DEFAULT_TASK,
    show_default=True,
    type=click.Choice(list(PRESETS)),
    help="Which benchmark's tuned (tau, prune layers) to use.",
)
@click.option(
    "--retention",
    default=DEFAULT_RETENTION,
    show_default=True,
    type=float,
    help="Fraction of visual tokens kept (presets: 0.1, 0.15, 0.2, 0.25).",
)
@click.option("--tau", type=float, help="Override the preset's segmentation threshold.")
@click.option("--prune-layers", help="Override the preset's prune layers, e.g. 10,21,23.")
@click.option("--max-window", default=6, show_default=True, type=int, help="Frames per segment limit.")
@click.option(
    "--keep-last-middle",
    is_flag=True,
    help="Keep the middle frame the released code drops (corrected variant).",
)
@click.option("--no-compress", is_flag=True, help="Run the stock model: no merging, all tokens.")
@click.option(
    "--engine-dir",
    "--artifacts",
    "artifacts",
    type=click.Path(path_type=Path),
    help="An earlytom-export folder: run its segments (ONNX Runtime or TensorRT) with the folder's "
    "own EarlyTom setting (the LLM still comes from --model).",
)
@click.option(
    "--backend", default="auto", show_default=True,
    type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]),
    help="What runs the vision segments. auto: torch without --engine-dir, onnxruntime with it.",
)  # fmt: skip
@click.option(
    "--inner-merge/--no-inner-merge", default=True, show_default=True,
    help="Stage III: merge half of the visual tokens inside the LLM at decoder layer 18, as in the paper.",
)  # fmt: skip
@click.option("--temperature", type=float, help="Sample with this temperature (default: greedy).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option(
    "--frames", default=32, show_default=True, type=int, help="Frames sampled uniformly from the video."
)
@click.option("--max-new-tokens", default=32, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    type=click.Choice(DTYPES),
    help="auto: float16 on CUDA, float32 on CPU.",
)
@click.option(
    "--warmup",
    default=1,
    show_default=True,
    type=int,
    help="Untimed runs before the reported one (TTFT of a cold first run is not representative).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@friendly_errors
def run(
    model: str, random_weights: bool, video: str, prompt: str, task: str, retention: float, tau: float | None,
    prune_layers: str | None, max_window: int, keep_last_middle: bool, no_compress: bool,
    artifacts: Path | None, backend: str, inner_merge: bool, temperature: float | None, top_p: float,
    seed: int | None, stream: bool, frames: int, max_new_tokens: int, device: str, dtype: str, warmup: int,
    as_json: bool,
) -> None:  # fmt: skip
    """Answer a prompt about a video with EarlyTom compression and print the TTFT breakdown."""
    import torch

    from earlytom.cli.report import summary
    from earlytom.models.prompt import check_prompt
    from earlytom.models.video import load_video_reporting
    from earlytom.runtime.generation import SamplingConfig
    from earlytom.runtime.pipeline import EarlyTomPipeline

    config: EarlyTomConfig | None = build_config(
        task, retention, tau=tau, prune_layers=parse_layers(prune_layers), max_window=max_window,
        drop_last_middle=not keep_last_middle, enabled=not no_compress,
    )  # fmt: skip
    if artifacts is not None:
        _check_no_setting_flags()
        config = None  # the folder's own setting
    # Check inputs and decode first: they should fail before a model load that can take a minute.
    check_prompt(prompt)
    sampling = (
        None if temperature is None else SamplingConfig(temperature=temperature, top_p=top_p, seed=seed)
    )
    progress(f"decoding {video} ...")
    decoded = load_video_reporting(video, frames, progress)
    progress(f"loading {model}{' (random weights)' if random_weights else ''} ...")
    pipeline = EarlyTomPipeline.from_pretrained(
        model, config=config, device=device, dtype=None if dtype == "auto" else getattr(torch, dtype),
        random_weights=random_weights, num_frames=frames, artifacts=artifacts, backend=backend,
        inner_merge=inner_merge,
    )  # fmt: skip
    for _ in range(max(0, warmup)):
        progress("warm-up run ...")
        pipeline(decoded, prompt, max_new_tokens=1)
    echo = (lambda piece: click.echo(piece, nl=False)) if stream and not as_json else None
    result = pipeline(decoded, prompt, max_new_tokens=max_new_tokens, sampling=sampling, stream=echo)
    if echo is not None:
        click.echo()
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(summary(result, task=task, video=Path(video)))


SETTING_FLAGS = ("task", "retention", "tau", "prune_layers", "max_window", "keep_last_middle", "no_compress")


def _check_no_setting_flags() -> None:
    """Compression flags contradict an artifact folder, which was exported for one setting."""
    context = click.get_current_context()
    given = [
        name for name in SETTING_FLAGS if context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if given:
        flags = ", ".join("--" + ("preset" if n == "task" else n.replace("_", "-")) for n in given)
        raise InputError(
            f"{flags} cannot change an exported folder's setting: re-export it with them instead"
        )


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@friendly_errors
def inspect(folder: Path) -> None:
    """Print what an earlytom-export folder holds: manifest, validation, segments and engine layers."""
    from earlytom.engines.inspect import describe_artifacts

    click.echo(describe_artifacts(folder))


def _register_commands() -> None:
    from earlytom.cli.bench import bench
    from earlytom.cli.flops import flops
    from earlytom.cli.plugins import build_plugins
    from earlytom.cli.profile import profile

    cli.add_command(bench)
    cli.add_command(build_plugins)
    cli.add_command(flops)
    cli.add_command(profile)


_register_commands()


def main() -> None:
    cli(prog_name="earlytom")


if __name__ == "__main__":
    main()

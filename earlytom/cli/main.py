"""`earlytom` command line: parses options and calls the library; user errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from earlytom.cli.common import Command, Group, friendly_errors, progress
from earlytom.cli.options import (
    DeviceOptions,
    ModelOptions,
    SettingOptions,
    VideoOptions,
    backend_option,
    device_options,
    model_options,
    prompt_option,
    setting_options,
    video_options,
    warmup_option,
)
from earlytom.cli.paramtypes import Count


@click.group(cls=Group)
@click.version_option(package_name="earlytom")
def cli() -> None:
    """EarlyTom: visual token compression inside the vision encoder of Video-LLMs."""


@cli.command(cls=Command)
@model_options()
@video_options(allow_partial=True)
@prompt_option()
@setting_options(no_compress=True, inner_merge=True)
@click.option(
    "--engine-dir", "--artifacts", "artifacts", type=click.Path(path_type=Path),
    help="An earlytom-export folder: run its segments (ONNX Runtime or TensorRT) with the folder's "
    "own EarlyTom setting (the LLM still comes from --model).",
)  # fmt: skip
@backend_option()
@click.option("--temperature", type=float, help="Sample with this temperature (default: greedy).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option("--max-new-tokens", default=32, show_default=True, type=Count(1), help="Answer length limit.")
@device_options()
@warmup_option(1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@friendly_errors
def run(
    model: ModelOptions, video: VideoOptions, prompt: str, setting: SettingOptions, artifacts: Path | None,
    backend: str, temperature: float | None, top_p: float, seed: int | None, stream: bool,
    max_new_tokens: int, device: DeviceOptions, warmup: int, as_json: bool,
) -> None:  # fmt: skip
    """Answer a prompt about a video with EarlyTom compression and print the TTFT breakdown."""
    from earlytom.cli.report import summary
    from earlytom.config import DEFAULT_TASKS
    from earlytom.models.adapters import adapter_for
    from earlytom.models.context import check_request
    from earlytom.models.generation import SamplingConfig
    from earlytom.models.prompt import check_prompt
    from earlytom.models.registry import family_of
    from earlytom.models.video import load_video_reporting
    from earlytom.runtime.pipeline import EarlyTomPipeline

    family = family_of(model.model)
    config = setting.config_unless_folder(artifacts, family.name)
    frames = video.count(model.model)
    # Check inputs and decode first: they should fail before a model load that can take a minute.
    check_prompt(prompt)
    sampling = (
        None if temperature is None else SamplingConfig(temperature=temperature, top_p=top_p, seed=seed)
    )
    if config is not None:  # a folder's setting is known once it is read: the pipeline checks then
        check_request(model.model, prompt, frames=frames, config=config,
                      random_weights=model.random_weights)  # fmt: skip
    progress(f"decoding {video.video} ...")
    decoded = load_video_reporting(
        video.video,
        frames,
        progress,
        allow_partial=video.allow_partial,
        rounding=adapter_for(family).rounding,
    )
    progress(f"loading {model.model}{' (random weights)' if model.random_weights else ''} ...")
    pipeline = EarlyTomPipeline.from_pretrained(
        model.model, config=config, device=device.device, dtype=device.torch_dtype(),
        random_weights=model.random_weights, num_frames=frames, artifacts=artifacts, backend=backend,
        inner_merge=setting.inner_merge,
    )  # fmt: skip
    for _ in range(warmup):
        progress("warm-up run ...")
        pipeline(decoded, prompt, max_new_tokens=1)
    echo = (lambda piece: click.echo(piece, nl=False)) if stream and not as_json else None
    result = pipeline(decoded, prompt, max_new_tokens=max_new_tokens, sampling=sampling, stream=echo)
    if echo is not None:
        click.echo()
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(summary(result, task=setting.task or DEFAULT_TASKS[family.name], video=video.video))


@cli.command(cls=Command)
@click.argument("folder", type=click.Path(path_type=Path))
@friendly_errors
def inspect(folder: Path) -> None:
    """Print what an earlytom-export folder holds: manifest, validation, segments and engine layers."""
    from earlytom.engines.inspect import describe_artifacts

    click.echo(describe_artifacts(folder))


@cli.command("demo-clip", cls=Command)
@friendly_errors
def demo_clip() -> None:
    """Print the path of the project's demo clip (10 s: a pan, a cut to a still shot, a cut to a
    moving square), writing it first if it is not cached yet. `--video demo` reads the same clip."""
    from earlytom.models.demo_clip import demo_clip_path

    click.echo(demo_clip_path())


def _register_commands() -> None:
    from earlytom.cli.bench import bench
    from earlytom.cli.flops import flops
    from earlytom.cli.plugins import build_plugins
    from earlytom.cli.profile import profile
    from earlytom.cli.serve import model_folder, serve_client

    cli.add_command(bench)
    cli.add_command(build_plugins)
    cli.add_command(flops)
    cli.add_command(profile)
    cli.add_command(model_folder)
    cli.add_command(serve_client)


_register_commands()


def main() -> None:
    cli(prog_name="earlytom")


if __name__ == "__main__":
    main()

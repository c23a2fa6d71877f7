"""`earlytom flops`: prefill FLOPs of the stock model and of EarlyTom (DESIGN §7)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any, cast

import click
from click.core import ParameterSource

from earlytom.cli.common import Command, friendly_errors
from earlytom.cli.options import (
    DEFAULTS,
    ModelOptions,
    SettingOptions,
    frames_option,
    model_options,
    setting_options,
)
from earlytom.cli.paramtypes import Count, FlagValueError, NumberList, flag_of
from earlytom.compression.flops import (
    CONVENTIONS,
    ArchitectureShape,
    Convention,
    FlopsReport,
    RunFlops,
    flops_report,
)
from earlytom.config import DEFAULT_TASK, EarlyTomConfig, check_retention
from earlytom.errors import ConfigError

TERA = 1e12
CONVENTION_TEXT = {
    "paper": "paper convention: vision attention over one joint sequence of B·{S} tokens, FastV's LLM "
    "formula, projector and LM head not counted",
    "per-frame": "per-frame convention: attention within each frame{windows}, GQA, SwiGLU, projector and "
    "last-token LM head counted",
}


class FrameSize(click.ParamType):
    """HxW in pixels (`336x588`) -> (height, width); the library checks the values."""

    name = "HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        found = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", str(value))
        if found is None:
            raise FlagValueError(
                f"{flag_of(param)}={value} is not HxW in pixels after resizing, e.g. 336x588", ctx, param
            )
        return int(found[1]), int(found[2])


@click.command(name="flops", cls=Command)
@model_options(default="llava-ov-7b", random_weights=False)
@frames_option()
@setting_options(retention=None, tau=False, keep_last_middle=False, inner_merge=True)
@click.option(
    "--frames-per-stage", type=NumberList(int, "frame counts"),
    help="Frames entering the encoder (Qwen2.5-VL: temporal patches of 2 frames), then after each prune "
    "layer, e.g. 32,23,17,12 (frames_per_stage of `earlytom run --json`). Default: the range from most "
    "merging to no merging.",
)  # fmt: skip
@click.option(
    "--visual-tokens", type=Count(1),
    help="Visual tokens N+1 given to the LLM, newline included (Qwen2.5-VL: N, no newline; "
    "visual_tokens_after of `earlytom run --json`). Default: estimated from the final frame count.",
)  # fmt: skip
@click.option(
    "--prompt-tokens", default=0, show_default=True, type=Count(0), help="Text tokens in the prefill."
)
@click.option(
    "--convention", default="paper", show_default=True, type=click.Choice(list(CONVENTIONS)),
    help="paper: reproduces the paper's 82.6 T; per-frame: the arithmetic a real prefill does.",
)  # fmt: skip
@click.option(
    "--frame-size", type=FrameSize(), metavar="HxW",
    help="Qwen2.5-VL only: each frame's HxW in pixels after resizing (multiples of 28, at most "
    "max_pixels = 200704), e.g. 336x588 for 16:9. Default: 448x448, 256 tokens per 2 frames.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (values in FLOPs).")
@friendly_errors
def flops(
    model: ModelOptions, frames: int | None, setting: SettingOptions,
    frames_per_stage: tuple[int, ...] | None, visual_tokens: int | None, prompt_tokens: int,
    convention: str, frame_size: tuple[int, int] | None, as_json: bool,
) -> None:  # fmt: skip
    """Print prefill TFLOPs (vision, projector, LLM, total) without loading any weights (only the
    config of --model is read). Without --retention only the stock model is counted. Without
    --frames, a model's authors' frame count (llava-video-7b: 64)."""
    from earlytom.models.flops_shapes import architecture_shape, default_frames, flops_presets

    source = click.get_current_context().get_parameter_source("frames")
    if frames is None or source is ParameterSource.DEFAULT:  # the model's authors' frame count
        frames = default_frames(model.model)
    config = _config(setting, flops_presets(model.model))
    if config is None and (frames_per_stage or visual_tokens is not None or setting.prune_layers):
        raise ConfigError("--frames-per-stage, --visual-tokens and --prune-layers need --retention")
    shape = architecture_shape(model.model, frame_size=frame_size)
    report = flops_report(
        shape, frames=frames, config=config, frames_per_stage=frames_per_stage,
        visual_tokens=visual_tokens, prompt_tokens=prompt_tokens, inner_merge=setting.inner_merge,
        convention=cast(Convention, convention),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"model": model.model} | report.to_dict()))
    else:
        click.echo(_table(model.model, shape, report))


def _config(
    setting: SettingOptions, presets: dict[str, dict[float, tuple[float, tuple[int, ...]]]]
) -> EarlyTomConfig | None:
    """τ does not change FLOPs, so any retention works once the prune layers are given. The task
    only picks the row of `presets` (the model's table); the config is built from τ and layers."""
    if setting.retention is None:
        return None
    if setting.prune_layers is not None:
        return replace(setting, task=DEFAULT_TASK, tau=DEFAULTS.tau).config()
    check_retention(setting.retention)
    task = setting.task or next(iter(presets))  # the family's first row: videomme, Qwen2.5-VL's default
    if task not in presets:
        raise ConfigError(f"unknown preset '{task}' for this model: choose {', '.join(presets)}")
    table = presets[task]
    key = next((r for r in table if math.isclose(r, setting.retention, abs_tol=1e-9)), None)
    if key is None:
        have = ", ".join(f"{r:.2f}" for r in table)
        raise ConfigError(
            f"preset '{task}' has no prune layers for retention={setting.retention} (it has {have}): "
            "pass --prune-layers, e.g. 10,21,23"
        )
    tau, layers = table[key]
    return replace(setting, task=DEFAULT_TASK, tau=tau, prune_layers=layers).config()


def _table(model: str, shape: ArchitectureShape, report: FlopsReport) -> str:
    windows = ""
    if shape.vision_windows:
        full = ",".join(map(str, shape.vision_full_layers))
        windows = f" (windows of ≤ {max(shape.vision_windows)} patches outside blocks {full})"
    convention = CONVENTION_TEXT[report.convention].format(S=shape.tokens_per_frame, windows=windows)
    lines = [
        f"{model} · {report.frames} frames · {report.prompt_tokens} prompt tokens · {convention}",
        _geometry(shape, report.frames),
        "TFLOPs (1 multiply-add = 1 FLOP, as in the paper)",
        f"{'':34}{'frames':>16}{'visual tokens':>15}{'vision':>9}{'projector':>11}{'LLM':>8}{'total':>9}",
        _row(report.baseline, report.baseline),
    ]
    config = report.config
    if config is not None:
        stage3 = (
            f"inner merge at layer {config.inner_layer} keeps {1 - config.inner_ratio:.0%}"
            if report.inner_merge
            else "no inner merge"
        )
        lines.insert(3, f"EarlyTom: retention {config.retention:.2f}, prune layers "
                     f"{','.join(map(str, config.prune_layers))}, {stage3}")  # fmt: skip
        lines += [_row(run, report.baseline) for run in report.earlytom]
        if len(report.earlytom) > 1:
            lines.append(
                "frame counts depend on the video: pass --frames-per-stage from `earlytom run --json`"
            )
        if any(run.visual_tokens_estimated for run in report.earlytom):
            lines.append(
                f"* visual tokens estimated with full final groups (max_window {config.max_window} − 1 "
                "frames each): pass --visual-tokens for the measured count"
            )
    return "\n".join(lines)


def _geometry(shape: ArchitectureShape, frames: int) -> str:
    """What B frames become: LLaVA's pooled tokens and newline, Qwen's temporal patches."""
    per = "per frame"
    if shape.temporal_patch > 1:
        patches = shape.encoder_frames(frames)
        per = f"per temporal patch of {shape.temporal_patch} frames ({frames} frames → {patches})"
    newline = f"{shape.newline_tokens} newline" if shape.newline_tokens else "no newline"
    return (
        f"{per}: {shape.tokens_per_frame} vision tokens → {shape.pooled_tokens_per_frame} visual tokens; "
        f"{newline} after the video"
    )


def _row(run: RunFlops, baseline: RunFlops) -> str:
    f = run.flops
    frames = "→".join(map(str, run.frames_per_stage))
    tokens = f"{run.visual_tokens}{'*' if run.visual_tokens_estimated else ''}"
    saving = "" if run is baseline else f"  ({f.total / baseline.flops.total - 1:+.1%})"
    return (
        f"{run.label:34}{frames:>16}{tokens:>15}{f.vision / TERA:9.2f}{f.projector / TERA:11.2f}"
        f"{f.llm / TERA:8.2f}{f.total / TERA:9.2f}{saving}"
    )

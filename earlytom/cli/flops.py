"""`earlytom flops`: prefill FLOPs of the stock model and of EarlyTom (DESIGN §7)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import cast

import click

from earlytom.cli.common import Command, friendly_errors
from earlytom.cli.options import (
    DEFAULTS,
    ModelOptions,
    SettingOptions,
    frames_option,
    model_options,
    setting_options,
)
from earlytom.cli.paramtypes import Count, NumberList
from earlytom.compression.flops import CONVENTIONS, Convention, FlopsReport, RunFlops, flops_report
from earlytom.config import PRESETS, EarlyTomConfig, check_retention
from earlytom.errors import ConfigError

TERA = 1e12
CONVENTION_TEXT = {
    "paper": "paper convention: vision attention over one joint sequence of B·729 tokens, FastV's LLM "
    "formula, projector and LM head not counted",
    "per-frame": "per-frame convention: attention within each frame, GQA, SwiGLU, projector and last-token "
    "LM head counted",
}


@click.command(name="flops", cls=Command)
@model_options(default="llava-ov-7b", random_weights=False)
@frames_option()
@setting_options(retention=None, tau=False, keep_last_middle=False, inner_merge=True)
@click.option(
    "--frames-per-stage", type=NumberList(int, "frame counts"),
    help="Frames entering the encoder, then after each prune layer, e.g. 32,23,17,12 (frames_per_stage "
    "of `earlytom run --json`). Default: the range from most merging to no merging.",
)  # fmt: skip
@click.option(
    "--visual-tokens", type=Count(1),
    help="Visual tokens N+1 given to the LLM, newline included (visual_tokens_after of `earlytom run "
    "--json`). Default: estimated from the final frame count.",
)  # fmt: skip
@click.option(
    "--prompt-tokens", default=0, show_default=True, type=Count(0), help="Text tokens in the prefill."
)
@click.option(
    "--convention", default="paper", show_default=True, type=click.Choice(list(CONVENTIONS)),
    help="paper: reproduces the paper's 82.6 T; per-frame: the arithmetic a real prefill does.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (values in FLOPs).")
@friendly_errors
def flops(
    model: ModelOptions, frames: int, setting: SettingOptions, frames_per_stage: tuple[int, ...] | None,
    visual_tokens: int | None, prompt_tokens: int, convention: str, as_json: bool,
) -> None:  # fmt: skip
    """Print prefill TFLOPs (vision, projector, LLM, total) without loading any weights (only the
    config of --model is read). Without --retention only the stock model is counted."""
    from earlytom.models.flops_shapes import architecture_shape

    config = _config(setting)
    if config is None and (frames_per_stage or visual_tokens is not None or setting.prune_layers):
        raise ConfigError("--frames-per-stage, --visual-tokens and --prune-layers need --retention")
    report = flops_report(
        architecture_shape(model.model), frames=frames, config=config, frames_per_stage=frames_per_stage,
        visual_tokens=visual_tokens, prompt_tokens=prompt_tokens, inner_merge=setting.inner_merge,
        convention=cast(Convention, convention),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"model": model.model} | report.to_dict()))
    else:
        click.echo(_table(model.model, report))


def _config(setting: SettingOptions) -> EarlyTomConfig | None:
    """τ does not change FLOPs, so any retention works once the prune layers are given."""
    if setting.retention is None:
        return None
    if setting.prune_layers is not None:
        return replace(setting, tau=DEFAULTS.tau).config()
    check_retention(setting.retention)
    table = PRESETS[setting.task]
    if not any(math.isclose(r, setting.retention, abs_tol=1e-9) for r in table):
        have = ", ".join(f"{r:.2f}" for r in table)
        raise ConfigError(
            f"preset '{setting.task}' has no prune layers for retention={setting.retention} (it has {have}): "
            "pass --prune-layers, e.g. 10,21,23"
        )
    return setting.config()


def _table(model: str, report: FlopsReport) -> str:
    lines = [
        f"{model} · {report.frames} frames · {report.prompt_tokens} prompt tokens · "
        f"{CONVENTION_TEXT[report.convention]}",
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
        lines.insert(2, f"EarlyTom: retention {config.retention:.2f}, prune layers "
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


def _row(run: RunFlops, baseline: RunFlops) -> str:
    f = run.flops
    frames = "→".join(map(str, run.frames_per_stage))
    tokens = f"{run.visual_tokens}{'*' if run.visual_tokens_estimated else ''}"
    saving = "" if run is baseline else f"  ({f.total / baseline.flops.total - 1:+.1%})"
    return (
        f"{run.label:34}{frames:>16}{tokens:>15}{f.vision / TERA:9.2f}{f.projector / TERA:11.2f}"
        f"{f.llm / TERA:8.2f}{f.total / TERA:9.2f}{saving}"
    )

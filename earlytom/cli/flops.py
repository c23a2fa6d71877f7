"""`earlytom flops`: prefill FLOPs of the stock model and of EarlyTom (DESIGN §7)."""

from __future__ import annotations

import json
import math
from typing import cast

import click

from earlytom.cli.common import friendly_errors, parse_layers, parse_list
from earlytom.compression.flops import CONVENTIONS, Convention, FlopsReport, RunFlops, flops_report
from earlytom.config import DEFAULT_TASK, PRESETS, EarlyTomConfig, check_retention, preset
from earlytom.errors import ConfigError

TERA = 1e12
CONVENTION_TEXT = {
    "paper": "paper convention: vision attention over one joint sequence of B·729 tokens, FastV's LLM "
    "formula, projector and LM head not counted",
    "per-frame": "per-frame convention: attention within each frame, GQA, SwiGLU, projector and last-token "
    "LM head counted",
}


@click.command(name="flops", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model", default="llava-ov-7b", show_default=True,
    help="tiny, llava-ov-0.5b, llava-ov-7b, or a checkpoint folder (only its config is read).",
)  # fmt: skip
@click.option("--frames", default=32, show_default=True, type=int, help="Frames B sampled from the video.")
@click.option("--retention", type=float, help="Also count EarlyTom keeping this fraction of visual tokens.")
@click.option(
    "--preset", "task", default=DEFAULT_TASK, show_default=True, type=click.Choice(list(PRESETS)),
    help="Which benchmark's prune layers to use.",
)  # fmt: skip
@click.option("--prune-layers", help="Override the preset's prune layers, e.g. 10,21,23.")
@click.option(
    "--frames-per-stage",
    help="Frames entering the encoder, then after each prune layer, e.g. 32,23,17,12 (frames_per_stage "
    "of `earlytom run --json`). Default: the range from most merging to no merging.",
)
@click.option(
    "--visual-tokens", type=int,
    help="Visual tokens N+1 given to the LLM, newline included (visual_tokens_after of `earlytom run "
    "--json`). Default: estimated from the final frame count.",
)  # fmt: skip
@click.option("--prompt-tokens", default=0, show_default=True, type=int, help="Text tokens in the prefill.")
@click.option("--max-window", default=6, show_default=True, type=int, help="Frames per segment limit.")
@click.option(
    "--inner-merge/--no-inner-merge", default=True, show_default=True,
    help="Stage III: halve the visual tokens from decoder layer 18 on (on in every paper run).",
)  # fmt: skip
@click.option(
    "--convention", default="paper", show_default=True, type=click.Choice(list(CONVENTIONS)),
    help="paper: reproduces the paper's 82.6 T; per-frame: the arithmetic a real prefill does.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (values in FLOPs).")
@friendly_errors
def flops(
    model: str, frames: int, retention: float | None, task: str, prune_layers: str | None,
    frames_per_stage: str | None, visual_tokens: int | None, prompt_tokens: int, max_window: int,
    inner_merge: bool, convention: str, as_json: bool,
) -> None:  # fmt: skip
    """Print prefill TFLOPs (vision, projector, LLM, total) without loading any weights."""
    from earlytom.models.flops_shapes import architecture_shape

    config = None if retention is None else _config(task, retention, parse_layers(prune_layers), max_window)
    if config is None and (frames_per_stage or visual_tokens is not None or prune_layers):
        raise ConfigError("--frames-per-stage, --visual-tokens and --prune-layers need --retention")
    report = flops_report(
        architecture_shape(model), frames=frames, config=config,
        frames_per_stage=_parse_counts(frames_per_stage), visual_tokens=visual_tokens,
        prompt_tokens=prompt_tokens, inner_merge=inner_merge, convention=cast(Convention, convention),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({"model": model} | report.to_dict()))
    else:
        click.echo(_table(model, report))


def _config(task: str, retention: float, layers: tuple[int, ...] | None, max_window: int) -> EarlyTomConfig:
    """τ does not change FLOPs, so any retention works once the prune layers are given."""
    if layers is not None:
        return EarlyTomConfig(retention=retention, prune_layers=layers, max_window=max_window)
    check_retention(retention)
    if not any(math.isclose(r, retention, abs_tol=1e-9) for r in PRESETS[task]):
        have = ", ".join(f"{r:.2f}" for r in PRESETS[task])
        raise ConfigError(
            f"preset '{task}' has no prune layers for retention={retention} (it has {have}): "
            "pass --prune-layers, e.g. 10,21,23"
        )
    return preset(task, retention, max_window=max_window)


def _parse_counts(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else parse_list(text, int, option="--frames-per-stage", what="frame counts")


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
                f"* visual tokens estimated with final groups of {config.max_window - 1} frames: pass "
                "--visual-tokens for the measured count"
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

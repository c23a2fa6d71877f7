"""Bench output: the text table, the JSON file and the stage-breakdown chart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from earlytom.errors import MissingDependencyError
from earlytom.runtime.bench import BenchReport
from earlytom.runtime.environment import slug
from earlytom.runtime.timing import STAGES

STAGE_LABELS = {"vision_encoding": "vision", "token_processing": "token processing",
                "llm_prefill": "LLM prefill", "other": "other"}  # fmt: skip


def result_stem(report: BenchReport) -> str:
    """`<device>-<model>-<date>`, e.g. cpu-2core-tiny-2026-07-01 or h100-80gb-hbm3-llava-ov-7b-..."""
    model = slug(Path(report.model).name if os.sep in report.model else report.model)
    return f"{report.device_slug}-{model}-{report.date[:10]}"


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend, or MissingDependencyError naming the extra."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            "the bench chart needs matplotlib: pip install 'earlytom[bench]'"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_results(report: BenchReport, out_dir: Path) -> tuple[Path, Path]:
    """`<stem>.json` (BenchReport.to_dict) and `<stem>.png` (p50 stage breakdown per setting)."""
    plt, stem = require_matplotlib(), result_stem(report)
    json_path, png_path = Path(out_dir) / f"{stem}.json", Path(out_dir) / f"{stem}.png"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    _plot(plt, report, png_path)
    return json_path, png_path


def _plot(plt: Any, report: BenchReport, path: Path) -> None:
    rows = report.rows()
    labels = [row.label for row in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3.0, 4.8))
    bottoms = [0.0] * len(rows)
    for stage in STAGES:
        heights = [row.p50(stage) for row in rows]
        bars = ax.bar(labels, heights, bottom=bottoms, label=STAGE_LABELS[stage], width=0.6)
        for bar, row in zip(bars, rows, strict=True):
            if row.method == "post-encoder":
                bar.set_hatch("//")  # the post-encoder baseline, told apart from EarlyTom at a glance
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, (row, top) in enumerate(zip(rows, bottoms, strict=True)):
        note = f"{row.p50():.1f} ms" + ("" if row is report.baseline else f"\n{row.speedup:.2f}×")
        ax.annotate(note, (x, top), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")  # fmt: skip
    ax.set_ylim(0, max(bottoms) * 1.2)
    ax.set_ylabel(f"TTFT p50 per stage (ms, {report.runs} runs after {report.warmup} warm-up)")
    post = "; post: stock encoder, then top-k" if report.post_encoder else ""
    ax.set_xlabel(f"setting (baseline: stock model, all tokens; EarlyTom: retention{post})")
    weights = " (random weights)" if report.random_weights else ""
    ax.set_title(f"{report.model}{weights} · {report.frames} frames · {report.dtype} · {report.backend}\n"
                 f"{report.device_name}", fontsize=9)  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the bars, never on them
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(report: BenchReport) -> str:
    """A text table: one row per setting, times in ms (p50 of the timed runs unless said)."""
    weights = " (random weights)" if report.random_weights else ""
    head = (
        f"{'setting':<11}{'TTFT p50':>10}{'p90':>9}{'vision':>9}{'tokens':>8}{'prefill':>9}{'other':>8}"
        f"{'speed-up':>10}{'visual tok':>12}  {'frames per stage':<18}{'TFLOPs paper':>13}{'per-frame':>11}"
    )
    lines = [
        f"{report.model}{weights} on {report.device} ({report.device_name}), {report.dtype}, "
        f"{report.backend} backend",
        f"{report.frames} frames · preset {report.task} · {report.prompt_tokens} prompt tokens · "
        f"p50 of {report.runs} runs after {report.warmup} warm-up · ms",
        head,
        "-" * len(head),
    ]
    for row in report.rows():
        frames = "→".join(map(str, row.frames_per_stage))
        lines.append(
            f"{row.label:<11}{row.p50():>10.1f}{row.p90():>9.1f}{row.p50('vision_encoding'):>9.1f}"
            f"{row.p50('token_processing'):>8.1f}{row.p50('llm_prefill'):>9.1f}{row.p50('other'):>8.1f}"
            f"{row.speedup:>9.2f}×{row.visual_tokens:>12}  {frames:<18}"
            f"{row.flops['paper']['total'] / 1e12:>13.4g}{row.flops['per-frame']['total'] / 1e12:>11.4g}"
        )
    compressed = (*report.settings, *report.post_encoder)
    sources = "; ".join(sorted({row.inner_merge_source for row in compressed}))
    counted = "counted" if any(row.inner_layer is not None for row in compressed) else "not counted"
    lines.append(f"Stage III (inner-LLM merge) {counted} in FLOPs: {sources}")
    if report.post_encoder:
        lines.append("post r: the post-encoder baseline (stock encoder, then per-frame top-k by last-layer "
                     "received attention), same language-model side")  # fmt: skip
    return "\n".join(lines)

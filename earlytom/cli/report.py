"""Human-readable summaries of runs."""

from __future__ import annotations

from pathlib import Path

from earlytom.runtime.pipeline import RunResult


def summary(result: RunResult, *, task: str, video: Path) -> str:
    extra = result.extra
    config = extra["config"]
    if config["enabled"]:
        layers = config["prune_layers"]
        origin = "exported setting" if extra.get("backend") == "onnxruntime" else f"{task} preset"
        compress = (
            f"{origin} · retention {config['retention']:.2f} · τ {config['tau']} · "
            f"prune layers {', '.join(map(str, layers))}"
            + ("" if config["drop_last_middle"] else " · last middle kept")
        )
        stages = [str(result.frames_per_stage[0])] + [
            f"{count} (layer {layer})"
            for count, layer in zip(result.frames_per_stage[1:], layers, strict=True)
        ]
        frames = " → ".join(stages)
    else:
        compress, frames = "off (stock model)", f"{result.frames_per_stage[0]} (no merging)"
    ratio = 100.0 * result.visual_tokens_after / result.visual_tokens_before
    t = result.ttft_ms
    lines = [
        f"model     {extra['model']} on {extra['device']} ({extra['dtype']}), "
        f"vision path in {extra['backend']}",
        f"video     {video}: {extra['video']['total_frames']} frames, {result.frames_per_stage[0]} sampled",
        f"compress  {compress}",
        f"frames    {frames}",
        f"tokens    {result.visual_tokens_before} → {result.visual_tokens_after} visual tokens "
        f"({ratio:.1f} %, newline included)",
        f"TTFT      {t.total:.1f} ms = vision encoding {t.vision_encoding:.1f} + token processing "
        f"{t.token_processing:.1f} + LLM prefill {t.llm_prefill:.1f} + other {t.other:.1f}",
        f"answer    {result.text or '(empty)'}",
    ]
    return "\n".join(lines)

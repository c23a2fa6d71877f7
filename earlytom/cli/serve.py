"""`earlytom serve-client`: ask a vLLM server running the EarlyTom plugin about a video."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from earlytom.cli.common import Command, friendly_errors, progress
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
)
from earlytom.cli.paramtypes import Count
from earlytom.errors import InputError


@click.command("serve-client", cls=Command)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The vLLM server.")
@click.option(
    "--route", type=click.Choice(["embeds", "video"]), default="embeds", show_default=True,
    help="embeds: compute the visual span here (any backend) and send it; video: send the file, the "
    "server compresses it with its own setting (exact budget).",
)  # fmt: skip
@model_options(default="tiny-vllm")
@video_options()
@prompt_option()
@setting_options(no_compress=True)
@click.option(
    "--artifacts", type=click.Path(path_type=Path),
    help="embeds route: compute the span with this earlytom-export folder's stages.",
)  # fmt: skip
@backend_option()
@device_options()
@click.option("--max-new-tokens", default=32, show_default=True, type=Count(1), help="Answer length limit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the summary.")
@friendly_errors
def serve_client(
    url: str, route: str, model: ModelOptions, video: VideoOptions, prompt: str, setting: SettingOptions,
    artifacts: Path | None, backend: str, device: DeviceOptions, max_new_tokens: int, as_json: bool,
) -> None:  # fmt: skip
    """Send one question about a video to a vLLM server and print the answer and timings.

    Route embeds keeps Stages I+II exactly as `earlytom run` (Stage III off: vLLM keeps one KV
    length per request); route video lets the server's plugin compress the frames it samples.
    """
    from earlytom.models.prompt import check_prompt
    from earlytom.serving.client import ask, chat_body, served_model, video_message

    check_prompt(prompt)
    if route == "video" and (setting.given or artifacts is not None):
        raise InputError(
            "the video route compresses with the server's own setting: drop "
            f"{', '.join([*setting.given, *(['--artifacts'] if artifacts else [])])} or use --route embeds"
        )
    name = served_model(url)  # an unreachable server fails before any model loads
    extra: dict[str, Any] = {"route": route, "url": url, "served_model": name}
    if route == "video":
        messages = video_message(video.video, prompt)
    else:
        messages, span_info = _span_messages(model, video, prompt, setting, artifacts, backend, device)
        extra |= span_info
    progress(f"asking {url} ({route} route) ...")
    reply = ask(url, chat_body(messages, model=name, max_tokens=max_new_tokens))
    result = reply.to_dict() | extra
    click.echo(json.dumps(result) if as_json else _summary(result))


def _span_messages(
    model: ModelOptions, video: VideoOptions, prompt: str, setting: SettingOptions,
    artifacts: Path | None, backend: str, device: DeviceOptions,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Route 1: the visual span computed here, as `earlytom run` computes it (Stage III off)."""
    from earlytom.models.registry import family_of
    from earlytom.models.video import load_video
    from earlytom.runtime.pipeline import EarlyTomPipeline
    from earlytom.serving.client import span_message

    family = family_of(model.model)
    if family.adapter != "llava":
        raise InputError(f"the vLLM plugin serves LLaVA-OneVision; {model.model} is a {family.name} model")
    config = setting.config_unless_folder(artifacts, family.name)
    frames = video.count(model.model)
    progress(f"decoding {video.video} ...")
    decoded = load_video(video.video, frames)
    progress(f"loading {model.model} ...")
    pipeline = EarlyTomPipeline.from_pretrained(
        model.model, config=config, device=device.device,
        dtype=device.torch_dtype(), random_weights=model.random_weights, num_frames=frames,
        artifacts=artifacts, backend=backend, inner_merge=False,
    )  # fmt: skip
    start = time.perf_counter()
    tokens = pipeline.prepare(decoded, prompt).video
    vision_ms = (time.perf_counter() - start) * 1e3
    info = {
        "span_rows": int(tokens.embeds.shape[0]),
        "span_ms": vision_ms,
        "frames_per_stage": list(tokens.frames_per_stage),
        "backend": pipeline.backend,
    }
    return span_message(tokens.embeds, prompt), info


def _summary(result: dict[str, Any]) -> str:
    lines = [f"server    {result['url']} · {result['served_model']} · {result['route']} route"]
    if "span_rows" in result:
        frames = " → ".join(str(count) for count in result["frames_per_stage"])
        lines.append(
            f"span      {result['span_rows']} rows (N + 1), computed here in {result['span_ms']:.1f} ms "
            f"({result['backend']}) · frames {frames}"
        )
    lines.append(
        f"request   {result['payload_bytes'] / 1e6:.2f} MB · prompt {result['prompt_tokens']} tokens"
    )
    ttft = f"TTFT      client {result['ttft_ms']:.1f} ms"
    server = result.get("server_metrics") or {}
    if server.get("time_to_first_token_ms") is not None:
        queued = server.get("queue_time_ms") or 0.0
        ttft += f" · server {server['time_to_first_token_ms']:.1f} ms after {queued:.1f} ms queued"
    return "\n".join([*lines, ttft, f"answer    {result['text']}"])


@click.command("model-folder", cls=Command)
@click.argument("model", default="tiny-vllm")
@friendly_errors
def model_folder(model: str) -> None:
    """Print the local folder of MODEL (a locally built one is written first), e.g. for vLLM's --model."""
    from earlytom.models.registry import resolve_checkpoint

    click.echo(resolve_checkpoint(model))

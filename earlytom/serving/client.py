"""OpenAI-API requests to a vLLM server running the EarlyTom plugin (README "Serving").

Route 1 sends the visual span the project computed (any backend) as an `image_embeds` part;
route 2 sends the video file and lets the server compress it. Both put the question after the
visual part in one user turn, as `earlytom run` does, so the server's chat template renders
the same prompt. Standard library only: no HTTP client to install.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import ServingError
from earlytom.models.prompt import check_prompt

SPAN_FIELDS = ("video_embeds", "image_embeds")
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
}


@dataclass(frozen=True)
class ChatReply:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float  # request sent -> first generated token received (the client's view)
    total_ms: float
    payload_bytes: int  # size of the request body
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "payload_bytes": self.payload_bytes,
            **self.extra,
        }


def encode_span(span: torch.Tensor) -> str:
    """A (N + 1, C) visual span as the base64 `torch.save` bytes vLLM's `image_embeds` reads."""
    if span.ndim != 2:
        raise ValueError(f"a visual span is (N + 1, C), got shape {tuple(span.shape)}")
    buffer = io.BytesIO()
    torch.save(span.detach().to("cpu").contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def span_message(span: torch.Tensor, prompt: str, *, field: str = "video_embeds") -> list[dict[str, Any]]:
    """Route 1: one user turn holding the span, then the question.

    `video_embeds` puts the span where `earlytom run` puts the video (its `<video>` placeholder),
    so the prompt ids are the same; `image_embeds` is the field stock vLLM also knows.
    """
    if field not in SPAN_FIELDS:
        raise ValueError(f"unknown span field {field!r}: choose {' or '.join(SPAN_FIELDS)}")
    check_prompt(prompt)
    content = [{"type": field, field: encode_span(span)}, {"type": "text", "text": prompt}]
    return [{"role": "user", "content": content}]


def video_message(video: Path, prompt: str) -> list[dict[str, Any]]:
    """Route 2: one user turn holding the video file (as a data URL), then the question."""
    check_prompt(prompt)
    video = Path(video)
    if not video.is_file():
        raise ServingError(f"video {video} does not exist")
    media = VIDEO_TYPES.get(video.suffix.lower(), "video/mp4")
    url = f"data:{media};base64,{base64.b64encode(video.read_bytes()).decode('ascii')}"
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                         {"type": "text", "text": prompt}]}]  # fmt: skip


def chat_body(messages: list[dict[str, Any]], *, model: str, max_tokens: int) -> dict[str, Any]:
    """Greedy, streamed, with token ids and usage: what `ask` parses."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens} is out of range: generate at least 1 token")
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "return_tokens_as_token_ids": True,
    }


def served_model(url: str, *, timeout: float = 10.0) -> str:
    """The first model id the server lists (`/v1/models`)."""
    models = _get_json(url.rstrip("/") + "/v1/models", timeout)
    try:
        return str(models["data"][0]["id"])
    except (KeyError, IndexError, TypeError):
        raise ServingError(f"{url} lists no model at /v1/models") from None


def ask(url: str, body: dict[str, Any], *, timeout: float = 600.0) -> ChatReply:
    """POST a chat completion and read its stream; ServingError carries the server's message."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions", data, {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    token_ids: list[int] = []
    usage: dict[str, Any] = {}
    server: dict[str, Any] = {}
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in _events(response):
                if "error" in chunk:  # a failure after the stream started: sent as an event
                    raise ServingError(f"the server answered {_stream_error(chunk['error'])}")
                usage = chunk.get("usage") or usage
                server = chunk.get("metrics") or server  # --enable-per-request-metrics
                for choice in chunk.get("choices", []):
                    ids = _token_ids(choice)
                    if first is None and (ids or choice.get("delta", {}).get("content")):
                        first = time.perf_counter()
                    pieces.append(choice.get("delta", {}).get("content") or "")
                    token_ids.extend(ids)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        raise _request_error(url, "the server", error) from None
    end = time.perf_counter()
    return ChatReply(
        text="".join(pieces).strip(),
        token_ids=token_ids,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", len(token_ids))),
        ttft_ms=((first or end) - start) * 1e3,
        total_ms=(end - start) * 1e3,
        payload_bytes=len(data),
        extra={"server_metrics": server} if server else {},
    )


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, up to `[DONE]`."""
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        payload = line.removeprefix("data:").strip()
        if payload == "[DONE]":
            return
        yield json.loads(payload)


def _token_ids(choice: dict[str, Any]) -> list[int]:
    """Ids from streamed logprobs, where tokens read `token_id:<id>`."""
    content = (choice.get("logprobs") or {}).get("content") or []
    return [int(item["token"].removeprefix("token_id:")) for item in content]


def _stream_error(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('code', 'an error')}: {error.get('message', error)}"
    return str(error)


def _server_message(error: urllib.error.HTTPError) -> str:
    text = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip().splitlines()[0] if text.strip() else error.reason


def _get_json(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        raise _request_error(url, url, error) from None


def _request_error(url: str, who: str, error: Exception) -> ServingError:
    """An HTTP error status as the server's own message; anything else as "cannot reach"."""
    if isinstance(error, urllib.error.HTTPError):
        return ServingError(f"{who} answered {error.code}: {_server_message(error)}")
    return ServingError(
        f"cannot reach {url} ({getattr(error, 'reason', error)}): start the vLLM server first "
        "(README, Serving) or pass its --url"
    )

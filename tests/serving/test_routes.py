"""Both serving routes against a real vLLM server (CPU build), compared with the project's own run.

Route 1: spans the project computed go in as `image_embeds`; vLLM's greedy tokens must equal the
project's generation with Stage III off, alone and batched. Route 2: the server compresses the
video itself with the exact budget; its prompt holds text + N* + 1 tokens and its answer equals
the project's exact-budget pipeline on the torch backend.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from earlytom.compression import exact_count
from earlytom.config import EarlyTomConfig, preset
from earlytom.errors import ServingError
from earlytom.runtime.pipeline import EarlyTomPipeline
from earlytom.serving.client import ChatReply, ask, chat_body, encode_span, span_message, video_message

PROMPT = "Describe the video."
MAX_TOKENS = 8
SPAN_SETTINGS = {
    "videomme-0.10": preset("videomme", 0.10),
    "videomme-0.25": preset("videomme", 0.25),
    "videomme-0.20": preset("videomme", 0.20),
    "stock": EarlyTomConfig(enabled=False),
}
pytestmark = pytest.mark.slow


class Span:
    def __init__(self, embeds: torch.Tensor, prompt_tokens: int, token_ids: list[int]) -> None:
        self.embeds, self.prompt_tokens, self.token_ids = embeds, prompt_tokens, token_ids


@pytest.fixture(scope="module")
def spans(tiny_vllm_loaded, jobs_frames) -> dict[str, Span]:
    """Each setting's visual span of jobs.mp4, its prompt length and the project's own answer."""
    found = {}
    for name, config in SPAN_SETTINGS.items():
        pipeline = EarlyTomPipeline(tiny_vllm_loaded, config, inner_merge=False)
        prepared = pipeline.prepare(jobs_frames, PROMPT)
        answer = pipeline(jobs_frames, PROMPT, max_new_tokens=MAX_TOKENS)
        found[name] = Span(prepared.video.embeds, prepared.input_ids.shape[1], answer.token_ids)
    lengths = [span.embeds.shape[0] for span in found.values()]
    assert len(set(lengths)) == len(lengths)  # spans of different lengths
    return found


def send_span(server, span: torch.Tensor, field: str = "video_embeds") -> ChatReply:
    body = chat_body(span_message(span, PROMPT, field=field), model=server.spec.model, max_tokens=MAX_TOKENS)
    return ask(server.spec.url, body)


@pytest.mark.parametrize("field", ["video_embeds", "image_embeds"])
def test_route1_each_span_alone_equals_the_projects_generation(server, spans, field) -> None:
    for name, span in spans.items():
        reply = send_span(server, span.embeds, field)
        assert reply.prompt_tokens == span.prompt_tokens, name  # text + N + 1
        assert reply.token_ids == span.token_ids, name


def test_route1_concurrent_spans_of_different_lengths(server, spans) -> None:
    """Stock vLLM kills its engine on such a batch; every request must be answered as if alone."""
    order = [*spans, *spans]  # 8 requests, 4 lengths
    with ThreadPoolExecutor(len(order)) as pool:
        replies = list(pool.map(lambda name: send_span(server, spans[name].embeds), order))
    for name, reply in zip(order, replies, strict=True):
        assert reply.prompt_tokens == spans[name].prompt_tokens, name
        assert reply.token_ids == spans[name].token_ids, name


@pytest.mark.parametrize(
    ("span", "message"),
    [
        (torch.ones(40, 64, dtype=torch.int64), "video_embeds has dtype int64"),
        (torch.randn(40, 65), "hidden dimension mismatch: got 65, but model expects 64"),
        (torch.full((40, 64), float("nan")), "NaN or infinite"),
        (torch.randn(40, 64, dtype=torch.float64), "video_embeds has dtype float64"),
    ],
)
def test_route1_malformed_span_is_a_400_and_the_server_keeps_serving(server, spans, span, message) -> None:
    with pytest.raises(ServingError, match=f"answered 400: .*{message}"):
        send_span(server, span)
    reply = send_span(server, spans["videomme-0.10"].embeds)
    assert reply.token_ids == spans["videomme-0.10"].token_ids


def test_encode_span_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match=r"\(N \+ 1, C\)"):
        encode_span(torch.zeros(1, 3, 4))


@pytest.fixture(scope="module")
def clips(jobs_mp4: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jobs.mp4 and three generated clips of 32 frames or more (vLLM does not repeat frames)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from clips import CLIPS, write_clip
    finally:
        sys.path.pop(0)
    folder = tmp_path_factory.mktemp("clips")
    names = ["hard_cut", "frozen_tail", "slow_pan"]
    return {"jobs": jobs_mp4} | {name: write_clip(CLIPS[name], folder) for name in names}


def test_route2_prompt_length_and_answer_equal_the_exact_pipeline(server, tiny_vllm_loaded, clips) -> None:
    config = preset("videomme", 0.10, budget="exact")
    pipeline = EarlyTomPipeline(tiny_vllm_loaded, config, inner_merge=False, backend="torch")
    for name, clip in clips.items():
        decoded = pipeline.load_video(clip)
        assert decoded.total_frames >= 32, name
        own = pipeline(decoded, PROMPT, max_new_tokens=MAX_TOKENS)
        text = pipeline.prepare(decoded, PROMPT).input_ids.shape[1] - own.visual_tokens_after
        body = chat_body(video_message(clip, PROMPT), model=server.spec.model, max_tokens=MAX_TOKENS)
        reply = ask(server.spec.url, body)
        assert reply.prompt_tokens == text + exact_count(196, 32, retention=0.10) + 1, name
        assert own.visual_tokens_after == exact_count(196, 32, retention=0.10) + 1, name
        assert reply.token_ids == own.token_ids, name


def test_serve_client_command_on_both_routes(server, spans, tiny_vllm, jobs_mp4) -> None:
    from click.testing import CliRunner

    from earlytom.cli.main import cli

    common = ["serve-client", "--url", server.spec.url, "--model", str(tiny_vllm), "--video", str(jobs_mp4),
              "--prompt", PROMPT, "--max-new-tokens", str(MAX_TOKENS)]  # fmt: skip
    embeds = CliRunner().invoke(cli, [*common, "--json"])
    assert embeds.exit_code == 0, embeds.output
    result = json.loads(embeds.output.strip().splitlines()[-1])
    assert result["token_ids"] == spans["videomme-0.10"].token_ids
    assert result["span_rows"] == spans["videomme-0.10"].embeds.shape[0]
    assert result["server_metrics"]["time_to_first_token_ms"] > 0
    video = CliRunner().invoke(cli, [*common, "--route", "video"])
    assert video.exit_code == 0, video.output
    assert "video route" in video.output and "TTFT      client" in video.output
    refused = CliRunner().invoke(cli, [*common, "--route", "video", "--retention", "0.2"])
    assert refused.exit_code == 1
    assert "the video route compresses with the server's own setting: drop --retention" in refused.output

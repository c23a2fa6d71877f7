"""Serving TTFT under concurrent load: stock vLLM vs EarlyTom route 1 (spans in) vs route 2 (video in).

Two real vLLM servers in turn (stock LLaVA-OneVision; the EarlyTom plugin serving both routes), the
same video and question at concurrency 1/4/8. TTFT is the server's own per-request timing
(`--enable-per-request-metrics`: queue wait + scheduled-to-first-token); the client's view is kept
beside it. Route 1 moves the vision encoder out of the server: its span is computed here once, timed
(median after warm-up), and reported as `span_ms` next to the server's TTFT, never hidden in it.

    python benchmarks/serving_bench.py --out benchmarks/results              # tiny on a CPU: plumbing
    python benchmarks/serving_bench.py --model llava-ov-7b --dtype float16 --label gpu-h200 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import torch

from earlytom.config import preset
from earlytom.models.loading import load_model
from earlytom.models.registry import resolve_checkpoint
from earlytom.models.video import load_video
from earlytom.runtime.pipeline import EarlyTomPipeline
from earlytom.serving.client import ChatReply, ask, chat_body, span_message, video_message
from earlytom.serving.launch import ServerSpec, VllmServer, free_port

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT.parent / "shared" / "data" / "jobs.mp4"
PROMPT = "Describe the video."
Messages = list[dict[str, Any]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and PNG")
    parser.add_argument("--model", default="tiny-vllm", help="registered model or checkpoint folder")
    parser.add_argument("--video", type=Path, default=None, help="default: jobs.mp4 when present, else demo")
    parser.add_argument("--retention", type=float, default=0.10)
    parser.add_argument("--preset", default="videomme")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--concurrency", default="1,4,8", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=2, help="requests per level = rounds × concurrency")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--dtype", default="float32", help="of the served model and the span")
    parser.add_argument("--device", default="cpu", help="where this script computes route 1's span")
    parser.add_argument("--vllm-python", default=None, help="default: scripts/vllm_env.sh's environment")
    parser.add_argument("--label", default="cpu-plumbing", help="names the result files")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()), help="servers' logs")
    return parser.parse_args()


def vllm_python(given: str | None) -> str:
    if given:
        return given
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "vllm_env.sh")], capture_output=True, text=True, check=True
    )
    return str(ROOT / done.stdout.strip().splitlines()[-1])


def vllm_versions(python: str) -> dict[str, str]:
    code = "import json, vllm, torch, transformers; print(json.dumps({'vllm': vllm.__version__, "
    code += "'torch': torch.__version__, 'transformers': transformers.__version__}))"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def route1_span(args: argparse.Namespace, folder: Path, video: Path) -> tuple[torch.Tensor, list[float]]:
    """The visual span as the client computes it, and its timings (warm-up excluded)."""
    loaded = load_model(str(folder), device=torch.device(args.device), dtype=getattr(torch, args.dtype))
    config = preset(args.preset, args.retention)
    pipeline = EarlyTomPipeline(loaded, config, num_frames=args.frames, inner_merge=False)
    decoded = load_video(video, args.frames)
    pipeline.prepare(decoded, PROMPT)  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        span = pipeline.prepare(decoded, PROMPT).video.embeds
        times.append((time.perf_counter() - start) * 1e3)
    return span, times


def load_level(url: str, model: str, messages: Messages, args: argparse.Namespace,
               concurrency: int) -> dict[str, Any]:  # fmt: skip
    """Warm-up, then rounds × concurrency requests with `concurrency` in flight."""

    def send(_: int) -> ChatReply:
        return ask(url, chat_body(with_uuid(messages), model=model, max_tokens=args.max_tokens))

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(concurrency)))  # warm-up, untimed
        start = time.perf_counter()
        replies: list[ChatReply] = list(pool.map(send, range(concurrency * args.rounds)))
        wall = time.perf_counter() - start
    server = [r.extra.get("server_metrics", {}) for r in replies]
    ttft = [(m.get("queue_time_ms") or 0.0) + (m.get("time_to_first_token_ms") or 0.0) for m in server]
    return {
        "concurrency": concurrency,
        "requests": len(replies),
        "wall_s": wall,
        "requests_per_s": len(replies) / wall,
        "output_tokens_per_s": sum(r.completion_tokens for r in replies) / wall,
        "server_ttft_ms": {"p50": percentile(ttft, 50), "p90": percentile(ttft, 90), "raw": ttft},
        "client_ttft_ms": {
            "p50": percentile([r.ttft_ms for r in replies], 50),
            "raw": [r.ttft_ms for r in replies],
        },
        "server_metrics_raw": server,
        "prompt_tokens": sorted({r.prompt_tokens for r in replies}),
        "payload_bytes": replies[0].payload_bytes,
    }


def with_uuid(messages: Messages) -> Messages:
    """The same request with a fresh id on its visual part: vLLM caches processed media and
    encoder outputs by content, and a benchmark sending one video again would time cache hits."""
    first, *rest = messages[0]["content"]
    return [{**messages[0], "content": [{**first, "uuid": uuid.uuid4().hex}, *rest]}]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def serve_and_measure(spec: ServerSpec, python: str, log: Path, routes: dict[str, Messages],
                      args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:  # fmt: skip
    results: dict[str, Any] = {}
    print(f"starting vLLM ({spec.route}) ...", file=sys.stderr)
    with VllmServer(spec, python=python, log=log) as server:
        for route, messages in routes.items():
            results[route] = []
            for level in levels:
                print(f"  {route}: concurrency {level} ...", file=sys.stderr)
                results[route].append(load_level(server.spec.url, spec.model, messages, args, level))
    return results


def plot(rows: dict[str, list[dict[str, Any]]], span_ms: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for route, levels in rows.items():
        xs = [level["concurrency"] for level in levels]
        left.plot(xs, [level["server_ttft_ms"]["p50"] for level in levels], marker="o", label=route)
        right.plot(xs, [level["requests_per_s"] for level in levels], marker="o", label=route)
    left.axhline(span_ms, color="grey", linestyle=":", label="route 1 span, computed by the client")
    left.set(xlabel="concurrent requests", ylabel="server TTFT p50 (ms)", title="TTFT")
    right.set(xlabel="concurrent requests", ylabel="requests / s", title="throughput")
    left.legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [int(level) for level in args.concurrency.split(",")]
    video = args.video or (JOBS if JOBS.is_file() else Path(_demo_clip()))
    python = vllm_python(args.vllm_python)
    folder = resolve_checkpoint(args.model)
    print("computing route 1's span ...", file=sys.stderr)
    span, span_times = route1_span(args, folder, video)
    common = {"model": str(folder), "frames": args.frames, "dtype": args.dtype,
              "extra_args": ("--no-enable-prefix-caching", "--mm-processor-cache-gb", "0")}  # fmt: skip
    setting = {"preset": args.preset, "retention": args.retention}
    rows = serve_and_measure(
        ServerSpec(route="stock", port=free_port(), **common), python, args.logs / "serving-stock.log",
        {"stock": video_message(video, PROMPT)}, args, levels,
    )  # fmt: skip
    rows |= serve_and_measure(
        ServerSpec(route="both", setting=setting, port=free_port(), **common), python,
        args.logs / "serving-earlytom.log",
        {"route1-embeds": span_message(span, PROMPT), "route2-video": video_message(video, PROMPT)},
        args, levels,
    )  # fmt: skip
    stem = f"serving-bench-{args.label}-{args.model.replace('/', '_')}-{date.today()}"
    span_ms = statistics.median(span_times)
    result = {
        "what": "TTFT under concurrent load, server timings; route 1's span is computed by the client",
        "label": args.label,
        "device": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "versions": {"server": vllm_versions(python), "client_torch": torch.__version__},
        "command": " ".join(sys.argv),
        "setting": setting | {"budget (route 2)": "exact", "video": str(video), **common},
        "route1_span": {"rows": span.shape[0], "median_ms": span_ms, "raw_ms": span_times},
        "routes": rows,
    }
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(rows, span_ms, args.out / f"{stem}.png", f"{args.label} · {args.model} · {video.name}")
    for route, levels_rows in rows.items():
        for level in levels_rows:
            ttft = level["server_ttft_ms"]
            print(f"{route:14} c={level['concurrency']}  server TTFT p50 {ttft['p50']:8.1f} ms"
                  f"  p90 {ttft['p90']:8.1f} ms  {level['requests_per_s']:6.2f} req/s"
                  f"  prompt {level['prompt_tokens']}")  # fmt: skip
    print(f"route 1 span (client) {span_ms:.1f} ms; results: {args.out / stem}.json")


def _demo_clip() -> str:
    from earlytom.models.demo_clip import demo_clip_path

    return str(demo_clip_path())


if __name__ == "__main__":
    main()

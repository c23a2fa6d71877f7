"""The exact-count budget against the released (faithful) selection, on the clip corpus (DESIGN §9).

For each clip and retention, the torch pipeline (tiny, fp32, Stage III off as under vLLM) runs the
faithful budget and the exact one on the same decoded frames, and compares: token counts (N vs
N*), whether Stage I's frame floor changed the merges, the overlap of the selected (frame,
position) sets (|F ∩ E| / |F| and Jaccard, on the same frames), and the greedy answer ids.

    python benchmarks/exact_budget.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from earlytom.config import preset
from earlytom.models.loading import load_model
from earlytom.models.video import DecodedVideo, load_video
from earlytom.runtime.pipeline import EarlyTomPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clips  # a sibling script, not a package
from decision_agreement import JOBS, PROMPT, environment


def selected(pipeline: EarlyTomPipeline, video: DecodedVideo) -> tuple[set[tuple[int, int]], tuple[int, ...]]:
    tokens = pipeline.prepare(video, PROMPT).video
    assert tokens.frame_ids is not None and tokens.positions is not None
    pairs = set(zip(tokens.frame_ids.tolist(), tokens.positions.tolist(), strict=True))
    return pairs, tokens.frames_per_stage


def compare(loaded: Any, video: DecodedVideo, retention: float, max_new_tokens: int) -> dict[str, Any]:
    runs = {}
    for budget in ("faithful", "exact"):
        pipeline = EarlyTomPipeline(loaded, preset("videomme", retention, budget=budget), inner_merge=False)
        pairs, frames = selected(pipeline, video)
        answer = pipeline(video, PROMPT, max_new_tokens=max_new_tokens).token_ids
        runs[budget] = {"pairs": pairs, "frames": frames, "answer": answer}
    faithful, exact = runs["faithful"], runs["exact"]
    same_frames = faithful["frames"] == exact["frames"]
    common = len(faithful["pairs"] & exact["pairs"]) if same_frames else None
    return {
        "n_faithful": len(faithful["pairs"]),
        "n_exact": len(exact["pairs"]),
        "frames_faithful": list(faithful["frames"]),
        "frames_exact": list(exact["frames"]),
        "floor_changed_merges": not same_frames,
        "kept_of_faithful": None if common is None else common / len(faithful["pairs"]),
        "jaccard": None if common is None else common / len(faithful["pairs"] | exact["pairs"]),
        "answer_equal": faithful["answer"] == exact["answer"],
    }


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kept = [row["kept_of_faithful"] for row in rows.values() if row["kept_of_faithful"] is not None]
    jaccard = [row["jaccard"] for row in rows.values() if row["jaccard"] is not None]
    deltas = [row["n_exact"] - row["n_faithful"] for row in rows.values()]
    return {
        "clips": len(rows),
        "answers_equal": sum(row["answer_equal"] for row in rows.values()),
        "floor_changed_merges": sum(row["floor_changed_merges"] for row in rows.values()),
        "kept_of_faithful": {"min": min(kept), "median": statistics.median(kept)} if kept else None,
        "jaccard": {"min": min(jaccard), "median": statistics.median(jaccard)} if jaccard else None,
        "n_exact_minus_n_faithful": {"min": min(deltas), "max": max(deltas)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--retentions", default="0.1,0.25")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    loaded = load_model("tiny", device=torch.device("cpu"), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = clips.write_clips(Path(tmp) / "clips")
        videos = {name: load_video(path, 32) for name, path in paths.items()}
        if JOBS.is_file():
            videos = {"jobs": load_video(JOBS, 32)} | videos
        results = {}
        for retention in (float(r) for r in args.retentions.split(",")):
            print(f"retention {retention}: {len(videos)} videos ...", file=sys.stderr)
            rows = {
                name: compare(loaded, video, retention, args.max_new_tokens) for name, video in videos.items()
            }
            results[f"{retention:.2f}"] = {"summary": summarize(rows), "clips": rows}
    report = {
        **environment(),
        "command": " ".join(["python", *sys.argv]),
        "model": "tiny (random weights), fp32, torch backend, Stage III off",
        "prompt": PROMPT,
        "max_new_tokens": args.max_new_tokens,
        "seconds": round(time.perf_counter() - started, 1),
        "retentions": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"exact-budget-cpu-2core-tiny-{date.today()}.json"
    path.write_text(json.dumps(report, indent=2))
    for retention, result in results.items():
        print(retention, json.dumps(result["summary"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

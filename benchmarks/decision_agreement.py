"""Do two backends make the same Stage I decisions? Before and after the tie band (DESIGN §7).

`tiny` (random weights), jobs.mp4 and the clips of benchmarks/clips.py: the torch fp32 reference
against torch fp16/bf16 and ONNX Runtime fp32/fp16 (exported here with `earlytom-export`), comparing
frames per stage, selected (frame, position) tokens and greedy answer ids at tie_band = 0 (the
released rule) and at each precision's band (the reference runs with the same band); plus the
noise of margins and similarities, flips with their margins, and the decisions each band changed.
    python benchmarks/decision_agreement.py --out benchmarks/results
Shortcuts, to fit a 2-core CPU: a banded run is executed only where the unbanded run of that
backend has a decision with 0 < margin <= band (elsewhere it is the same computation); an answer
is generated only where frames or tokens differ, equal tokens counting as an equal answer
(--all-answers generates every one). ONNX Runtime rows use the fp32 language model, so they
differ from the reference through the vision path only; torch fp16 runs the whole model in fp16.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch

from earlytom.compression import SEGMENT_CLOSE, TIE_BANDS, Decision, changed_count
from earlytom.models.video import DecodedVideo, load_video
from earlytom.runtime import EarlyTomPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clips  # a sibling script, not a package

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT.parent / "shared" / "data" / "jobs.mp4"
PROMPT = "Describe the video."


@dataclass(frozen=True)
class Backend:
    name: str
    backend: str  # torch | onnxruntime
    dtype: torch.dtype  # of the loaded model (the language model and, for torch, the vision path)
    export: str | None  # "fp32" / "fp16" folder for ONNX Runtime
    precision: str  # of the vision path: the key of its tie band

    @property
    def band(self) -> float:
        return TIE_BANDS[self.precision]


REFERENCE = Backend("torch fp32", "torch", torch.float32, None, "float32")
BACKENDS = {
    "torch-fp16": Backend("torch fp16", "torch", torch.float16, None, "float16"),
    "ort-fp32": Backend("onnxruntime fp32", "onnxruntime", torch.float32, "fp32", "float32"),
    "ort-fp16": Backend("onnxruntime fp16", "onnxruntime", torch.float32, "fp16", "float16"),
    "torch-bf16": Backend("torch bf16", "torch", torch.bfloat16, None, "bfloat16"),
}


def export_folders(work: Path, reuse: Path | None, wanted: set) -> tuple[dict[str, Path], list[str]]:
    """The fp16 and fp32 exports of tiny, made with the CLI (or reused from `reuse`)."""
    folders, commands = {}, []
    cli = shutil.which("earlytom-export")
    for precision, extra in [(p, e) for p, e in (("fp16", []), ("fp32", ["--fp32"])) if p in wanted]:
        folder = (reuse or work) / f"tiny-{precision}"
        command = [cli] if cli else [sys.executable, "-m", "earlytom.cli.export"]
        command += ["--model", "tiny", "--skip-build", "--out", str(folder), "--force", *extra]
        if reuse is None or not (folder / "manifest.json").exists():
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        folders[precision] = folder
        commands.append(" ".join(["earlytom-export", *command[1 if cli else 3 :]]))
    return folders, commands


def decode_all(work: Path, names: list[str] | None, with_jobs: bool) -> dict[str, DecodedVideo]:
    paths = clips.write_clips(work / "clips", names)
    if with_jobs:
        paths = {"jobs.mp4": JOBS, **paths}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short clips are sampled with repeats on purpose
        return {name: load_video(path, 32) for name, path in paths.items()}


@dataclass(frozen=True)
class Run:
    clip: str
    backend: str
    band: float  # of the pipeline that ran it
    frames: list[int]
    tokens: list[tuple[int, int]]  # selected (frame, position), in output order
    decisions: tuple[Decision, ...]
    seconds: float


class Runner:
    """One loaded model per dtype, one pipeline per (backend, band), runs per (backend, band, clip);
    answers on demand (only where the selected tokens differ, unless all_answers)."""

    def __init__(self, exports: dict[str, Path], videos: dict[str, DecodedVideo], max_new_tokens: int,
                 all_answers: bool) -> None:  # fmt: skip
        self.exports, self.videos, self.max_new_tokens = exports, videos, max_new_tokens
        self.all_answers = all_answers
        self.models: dict[torch.dtype, Any] = {}
        self.pipes: dict[tuple[str, float], EarlyTomPipeline] = {}
        self.runs: dict[tuple[str, float], dict[str, Run]] = {}
        self.answers: dict[tuple[str, float, str], list[int]] = {}
        self.config: dict[str, Any] | None = None
        self.seconds: dict[str, dict[str, float]] = {}

    def pipeline(self, backend: Backend, band: float) -> EarlyTomPipeline:
        if (backend.name, band) in self.pipes:
            return self.pipes[(backend.name, band)]
        if backend.dtype not in self.models:
            self.models[backend.dtype] = EarlyTomPipeline.from_pretrained(
                "tiny", device="cpu", dtype=backend.dtype, backend="torch", num_frames=32, tie_band=0.0
            ).loaded
        folder = None if backend.export is None else self.exports[backend.export]
        pipe = EarlyTomPipeline(self.models[backend.dtype], None, num_frames=32, artifacts=folder,
                                backend=backend.backend, tie_band=band)  # fmt: skip
        config = pipe.config.to_dict()  # torch: the default; a folder: its own, which must be the same
        if self.config is not None and config != self.config:
            raise SystemExit(f"{backend.name} runs with {config}, the reference with {self.config}")
        self.config, self.pipes[(backend.name, band)] = config, pipe
        return pipe

    def runs_at(self, backend: Backend, band: float) -> dict[str, Run]:
        if (backend.name, band) in self.runs:
            return self.runs[(backend.name, band)]
        base = None if band == 0.0 else self.runs_at(backend, 0.0)
        started, ran, out = time.perf_counter(), 0, {}
        for name, video in self.videos.items():
            # A band changes a run only through a released close/merge inside it; elsewhere reuse.
            if base is not None and not any(0.0 < d.margin <= band for d in base[name].decisions):
                out[name] = base[name]
                continue
            clock, ran = time.perf_counter(), ran + 1
            tokens = self.pipeline(backend, band).prepare(video, PROMPT).video
            pairs = list(zip(tokens.frame_ids.tolist(), tokens.positions.tolist(), strict=True))
            out[name] = Run(name, backend.name, band, list(tokens.frames_per_stage), pairs,
                            tuple(tokens.decisions), time.perf_counter() - clock)  # fmt: skip
        label = f"{backend.name}, band {band:g}"
        self.seconds[label] = {"seconds": round(time.perf_counter() - started, 1), "videos_run": ran}
        print(f"  {label}: {self.seconds[label]}", flush=True)
        self.runs[(backend.name, band)] = out
        return out

    def answer(self, run: Run) -> list[int]:
        key = (run.backend, run.band, run.clip)
        if key not in self.answers:
            pipe = self.pipes[(run.backend, run.band)]
            result = pipe(self.videos[run.clip], PROMPT, max_new_tokens=self.max_new_tokens)
            self.answers[key] = list(result.token_ids)
        return self.answers[key]

    def agree(self, a: Run, b: Run) -> dict[str, bool]:
        """Frames, tokens and answer; equal tokens count as equal answers unless all_answers."""
        same = {"frames": a.frames == b.frames, "tokens": a.tokens == b.tokens}
        answer = (same["tokens"] and not self.all_answers) or self.answer(a) == self.answer(b)
        return same | {"answer": answer}


# --- comparing runs ------------------------------------------------------------------------------


def lockstep(ref: tuple[Decision, ...], got: tuple[Decision, ...]) -> tuple[list, Any]:
    """Matched (ref, got) decisions up to the first one decided differently (the flip, or None).
    Until then both runs made the same choices, so both compare the same frames."""
    pairs = []
    for a, b in zip(ref, got, strict=False):
        if (a.stage, a.kind, a.frames) != (b.stage, b.kind, b.frames):
            break
        if a.outcome != b.outcome:
            return pairs, (a, b)
        pairs.append((a, b))
    return pairs, None


def quantiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    v = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(v, torch.tensor([0.5, 0.99, 0.999], dtype=torch.float64)).tolist()
    return {"count": len(values), "max": v.max().item(), "p99.9": q[2], "p99": q[1], "p50": q[0]}


def noise(pairs: list) -> dict[str, dict]:
    """|backend - reference| of margins, of raw similarities (merge comparisons) and of ŝ (closes)."""
    margin, sim, smoothed = [], [], []
    for a, b in pairs:
        margin.append(abs(a.margin - b.margin))
        if a.kind == SEGMENT_CLOSE:
            smoothed.append(abs(a.lhs - b.lhs))
        else:
            sim += [abs(a.lhs - b.lhs), abs(a.rhs - b.rhs)]
    return {"margin": quantiles(margin), "similarity": quantiles(sim), "smoothed": quantiles(smoothed)}


def suggest_band(margin: dict[str, float | int]) -> float | None:
    """Ten times the largest margin noise, rounded up to 1, 2 or 5 times a power of ten."""
    worst = 10.0 * float(margin.get("max", 0.0))
    if worst == 0.0:
        return None
    power = 10.0 ** math.floor(math.log10(worst))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= worst)


def flip_record(clip: str, flip: tuple[Decision, Decision]) -> dict[str, Any]:
    a, b = flip
    return {"clip": clip, "stage": a.stage, "kind": a.kind, "frames": list(a.frames),
            "reference_margin": a.margin, "backend_margin": b.margin}  # fmt: skip


def same_decisions(a: Run, b: Run) -> bool:
    return len(a.decisions) == len(b.decisions) and lockstep(a.decisions, b.decisions)[1] is None


def run_record(runner: Runner, run: Run, ref: Run | None = None) -> dict[str, Any]:
    out = {"agrees": runner.agree(run, ref), "same_decisions": same_decisions(run, ref)} if ref else {}
    near = [[d.stage, d.kind, list(d.frames), d.margin, d.outcome] for d in run.decisions
            if abs(d.margin) <= 1e-2]  # fmt: skip
    return out | {
        "frames_per_stage": run.frames, "tokens": len(run.tokens),
        "answer": runner.answers.get((run.backend, run.band, run.clip)),  # None: not needed, not run
        "decisions": len(run.decisions), "in_band": sum(d.in_band for d in run.decisions),
        "changed_by_band": changed_count(run.decisions),
        "min_abs_margin": min((abs(d.margin) for d in run.decisions), default=None),
        "near_decisions": near, "seconds": round(run.seconds, 2),
    }  # fmt: skip


def tally(runner: Runner, ref: dict[str, Run], got: dict[str, Run], names: list[str]) -> dict[str, int]:
    counts = {"frames": 0, "tokens": 0, "answer": 0, "decisions": 0}
    for name in names:
        agreed = runner.agree(ref[name], got[name]) | {"decisions": same_decisions(ref[name], got[name])}
        for field, ok in agreed.items():
            counts[field] += ok
    return counts


def parts(runs: dict[str, Run]) -> dict[str, list[str]]:
    return {"corpus": [n for n in runs if n != "jobs.mp4"], "jobs": [n for n in runs if n == "jobs.mp4"]}


def sides(runner: Runner, ref: dict[str, Run], got: dict[str, Run]) -> dict[str, Any]:
    split = parts(ref).items()
    return {
        "agree": {part: tally(runner, ref, got, names) for part, names in split},
        "changed_by_band": {
            part: sum(changed_count(got[n].decisions) for n in names) for part, names in split
        },
        "decisions": {part: sum(len(got[n].decisions) for n in names) for part, names in split},
    }


def compare_backend(runner: Runner, backend: Backend, ref0: dict, got0: dict, refp: dict, gotp: dict) -> dict:
    pairs, flips_before, flips_after = [], [], []
    for name in ref0:
        matched, flip = lockstep(ref0[name].decisions, got0[name].decisions)
        pairs += matched
        flips_before += [flip_record(name, flip)] if flip else []
        flip = lockstep(refp[name].decisions, gotp[name].decisions)[1]
        flips_after += [flip_record(name, flip)] if flip else []
    measured = noise(pairs)
    return {
        "backend": backend.name, "precision": backend.precision, "band": backend.band,
        "clips": len(parts(ref0)["corpus"]),
        "before": sides(runner, ref0, got0), "after": sides(runner, refp, gotp),
        "noise": measured, "suggested_band": suggest_band(measured["margin"]),
        "flips_before": flips_before, "flips_after": flips_after,
    }  # fmt: skip


def measure(runner: Runner, others: list[Backend]) -> dict[str, Any]:
    """Every backend against the reference, before (band 0) and after (its band)."""
    reference = runner.runs_at(REFERENCE, 0.0)
    rows, per_clip = [], {}
    for backend in others:
        before = runner.runs_at(backend, 0.0)
        ref_after, after = runner.runs_at(REFERENCE, backend.band), runner.runs_at(backend, backend.band)
        rows.append(compare_backend(runner, backend, reference, before, ref_after, after))
        for name in runner.videos:
            per_clip.setdefault(name, {})[backend.name] = {
                "before": run_record(runner, before[name], reference[name]),
                "after": run_record(runner, after[name], ref_after[name]),
            }
    bands = sorted({0.0, *(b.band for b in others)})
    effect = [
        {"band": band} | sides(runner, reference, runner.runs_at(REFERENCE, band)) for band in bands[1:]
    ]
    for name in runner.videos:
        runs = {f"band {b:g}": runner.runs[(REFERENCE.name, b)][name] for b in bands}
        per_clip[name][REFERENCE.name] = {label: run_record(runner, run) for label, run in runs.items()}
    return {"backends": rows, "reference_band_effect": effect, "clips": per_clip}


def markdown_table(report: dict[str, Any]) -> str:
    """Rows: each backend against the reference (before → after the band), then the reference with
    each band against itself without (what the band does to the released rule)."""
    fields, has_jobs = ("decisions", "frames", "tokens", "answer"), "jobs.mp4" in report["clips"]
    lines = [
        "| backend vs torch fp32 | band | Stage I decisions agree (before → after) | frames agree "
        "| tokens agree | answer agrees | jobs.mp4 decisions/frames/tokens/answer "
        "| decisions changed by the band: corpus (of all) / jobs.mp4 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(r["backend"], r["band"], r["before"], r["after"]) for r in report["backends"]]
    rows += [("torch fp32 banded vs released", e["band"], None, e) for e in report["reference_band_effect"]]
    n = len([name for name in report["clips"] if name != "jobs.mp4"])
    for label, band, before, after in rows:
        cells = [f"{before['agree']['corpus'][f] if before else '–'} → {after['agree']['corpus'][f]}/{n}"
                 for f in fields]  # fmt: skip
        marks = [["✓" if side["agree"]["jobs"][f] else "✗" for f in fields] if side and has_jobs else "–"
                 for side in (before, after)]  # fmt: skip
        jobs = ["".join(m) for m in marks]
        changed, total = after["changed_by_band"], after["decisions"]
        counts = f"{changed['corpus']} ({total['corpus']}) / {changed['jobs']} ({total['jobs']})"
        lines.append(f"| {label} | {band:g} | {' | '.join(cells)} | {jobs[0]} → {jobs[1]} | {counts} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True).stdout.strip()

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    modules = ("torch", "onnxruntime", "transformers", "av", "numpy")
    return {
        "device": f"cpu ({torch.get_num_threads()} threads, {cpu})",
        "versions": {"python": platform.python_version()}
        | {name: importlib.import_module(name).__version__ for name in modules},
        "commit": git("rev-parse", "HEAD"),
        "worktree_dirty": bool(git("status", "--porcelain")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for decision-agreement-*.json")
    parser.add_argument("--work", type=Path, help="folder for clips and exports (default: a temp folder)")
    parser.add_argument("--reuse-exports", type=Path, help="folder holding tiny-fp16/ and tiny-fp32/ exports")
    parser.add_argument("--clips", nargs="*", help="corpus clips to run (default: all)")
    parser.add_argument("--no-jobs", action="store_true", help="leave out jobs.mp4")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument(
        "--all-answers", action="store_true", help="answer all clips, not only differing ones"
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        others = [BACKENDS[name] for name in args.backends]
        exports, commands = export_folders(work, args.reuse_exports, {b.export for b in others} - {None})
        videos = decode_all(work, args.clips, not args.no_jobs)
        print(f"{len(videos)} videos, exports in {work}; running:", flush=True)
        runner = Runner(exports, videos, args.max_new_tokens, args.all_answers)
        result = measure(runner, others)
    report = {
        **environment(),
        "command": " ".join(["python", *sys.argv]),
        "export_commands": commands,
        "model": "tiny (random weights)",
        "config": runner.config,
        "prompt": PROMPT,
        "max_new_tokens": args.max_new_tokens,
        "all_answers": args.all_answers,
        "tie_bands": TIE_BANDS,
        "corpus": {name: clips.CLIPS[name].what for name in videos if name in clips.CLIPS},
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_run": runner.seconds,
        **result,
    }
    table = markdown_table(report)
    report["table"] = table
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"decision-agreement-cpu-{torch.get_num_threads()}core-tiny-{date.today()}.json"
    text = json.dumps(report, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")  # innermost lists on one line
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

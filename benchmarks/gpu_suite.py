"""The performance evidence in one call: GPU tests, the TokenSelect kernel bench, TTFT and FLOPs.

The clip is decoded once (a video, or a `.npz` frames file: no decoder needed) and every step gets
the same frames. Steps, in order; `suite-<device>-<model>-<date>.json` under --out is rewritten
atomically after each one with its status (ok, failed, skipped), so a run cut short keeps the
finished steps:
  1. gpu_tests: `pytest -m gpu`, with passed/skipped/failed counts and, apart, the modules that
     could not be collected (a missing optional package), by name;
  2. token_select_bench: benchmarks/token_select_bench.py (CUDA only);
  3. artifact_path: with --artifacts, the exported folder in ONNX Runtime and the torch modules at
     the folder's setting, on this device, same frames: frames per stage, visual tokens, token
     ids and TTFT of both, and whether they agree (a correctness run, not a speed result);
  4. model_build: the --model architecture with random weights;
  5. bench: `earlytom bench` in-process: the stock model, EarlyTom at each retention and the
     post-encoder baseline at each retention (timing, not accuracy), writing
     `<device>-<model>-<date>.json` and `.png`;
  6. profile: torch.profiler over one warm call of the baseline and of EarlyTom at the lowest
     retention: the top ops by device time (CPU time without a GPU) and the host-device syncs.
Last, a short table: TTFT per setting, speed-up, visual tokens, frames per stage, FLOPs in both
conventions with the paper's A100 numbers beside them, then each step's outcome. Exit 1 when a
step failed (its JSON is still written).

    python benchmarks/gpu_suite.py --out benchmarks/results                      # 7B, 32 frames
    python benchmarks/gpu_suite.py --video jobs.mp4 --frames 32 --write-frames jobs-32.npz
    python benchmarks/gpu_suite.py --out /tmp/suite --model tiny --frames 8 --device cpu \\
        --runs 1 --warmup 1 --artifacts /tmp/tiny-export                          # plumbing on a CPU

The kernel bench and the kernel test need libearlytom_kernels.so for the GPU's architecture
(`earlytom build-plugins --arch 90-real`) in the cache's plugins/ folder (see --cache-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from suite_report import PAPER, TARGETS, format_summary, summary_rows

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "jobs.mp4"
STEPS = ("gpu_tests", "token_select_bench", "artifact_path", "model_build", "bench", "profile")
AGREEMENT = ("frames_per_stage", "visual_tokens_after", "token_ids")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepFailed(Exception):
    """A step that ran but did not do its job; `result` is kept in the JSON."""

    def __init__(self, reason: str, result: dict[str, Any]) -> None:
        super().__init__(reason)
        self.result = result


class Interrupted(BaseException):
    """SIGTERM (a time limit): the running step is recorded as interrupted, then the suite stops."""


class SuiteRecord:
    """The suite JSON: one file, rewritten atomically (temp file + rename) after every step."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.data = {**header, "steps": {name: {"status": "pending"} for name in STEPS}}
        self.write()

    def write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)

    def run(self, name: str, step: Callable[[], dict[str, Any]]) -> None:
        """Run one step; record its result under `name` and its status under `steps`."""
        self.data["steps"][name] = {"status": "running"}
        self.write()
        started, result = time.perf_counter(), None
        try:
            result = step()
            skipped = "skipped" in result
            state = {"status": "skipped", "reason": result["skipped"]} if skipped else {"status": "ok"}
        except Interrupted:
            self.data["steps"][name] = {"status": "interrupted", "seconds": _since(started)}
            self.write()
            raise
        except StepFailed as exc:
            result, state = exc.result, {"status": "failed", "error": str(exc)}
        except Exception as exc:  # recorded, and the next steps still run
            from earlytom.errors import EarlyTomError

            state = {"status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
            if not isinstance(exc, EarlyTomError):  # our bug: keep where it happened
                state["traceback"] = traceback.format_exc()[-4000:]
                traceback.print_exc()
            say(f"{name} failed: {state['error']}")
        self.data["steps"][name] = {**state, "seconds": _since(started)}
        if result is not None:
            self.data[name] = result
        self.write()


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def junit_counts(path: Path) -> dict[str, Any]:
    """Counts from pytest's JUnit XML, with the modules that failed to import counted apart."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    modules = []
    for case in root.iter("testcase"):
        error = case.find("error")
        if error is not None and error.get("message") == "collection failure":
            text = error.text or ""
            missing = re.search(r"No module named '([^']+)'", text)
            last = [line for line in text.splitlines() if line.startswith("E ")]
            modules.append({"module": case.get("name"), "missing": missing.group(1) if missing else None,
                            "reason": last[-1][1:].strip() if last else "collection failure"})  # fmt: skip
    counts["collection_errors"] = len(modules)
    counts["errors"] -= len(modules)  # left: errors in set-up or tear-down of tests that ran
    counts["passed"] = (
        counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"] - len(modules)
    )
    return {"counts": counts, "collection_errors": modules}


def run_gpu_tests(out: Path, paths: list[str], prefix: str) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess; counts from its JUnit XML (every test skips without CUDA)."""
    junit = out / f"{prefix}gpu-tests.xml"
    # A module that cannot be imported here (a missing optional package) must not stop the rest.
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={junit}", *paths]  # fmt: skip
    say(f"GPU tests: {shlex.join(command)}")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {"command": shlex.join(command), "returncode": done.returncode,
                              "output_tail": (done.stdout + done.stderr)[-3000:]}  # fmt: skip
    if not junit.is_file():
        raise StepFailed(f"pytest exited {done.returncode} without writing {junit.name}", result)
    result |= junit_counts(junit)
    counts = result["counts"]
    if counts["failures"] or counts["errors"]:
        raise StepFailed(f"{counts['failures']} failed, {counts['errors']} errors", result)
    return result


def run_kernel_bench(out: Path) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "needs a CUDA device"}
    command = [sys.executable, str(REPO / "benchmarks" / "token_select_bench.py"), "--out", str(out)]
    say(f"TokenSelect bench: {shlex.join(command)}")
    started = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {"command": shlex.join(command), "returncode": done.returncode,
                              "output_tail": (done.stdout + done.stderr)[-3000:]}  # fmt: skip
    written = [p for p in out.glob("token_select-*.json") if p.stat().st_mtime >= started]
    if written:
        result["result"] = json.loads(max(written, key=lambda p: p.stat().st_mtime).read_text())
    if done.returncode != 0:
        raise StepFailed(f"token_select_bench.py exited {done.returncode}", result)
    return result


def run_artifact_path(
    folder: Path | None,
    video: Any,
    target: torch.device,
    *,
    model: str,
    cache_dir: Path | None,
    prompt: str,
    max_new_tokens: int,
) -> dict[str, Any]:
    """The exported folder in ONNX Runtime against the torch modules at the folder's setting."""
    if folder is None:
        return {"skipped": "no --artifacts folder given"}
    import onnxruntime

    from earlytom.runtime.pipeline import EarlyTomPipeline

    frames = int(video.frames.shape[0])
    common = {"device": str(target), "num_frames": frames, "cache_dir": cache_dir}
    exported = EarlyTomPipeline.from_pretrained(model, artifacts=folder, backend="onnxruntime", **common)
    stock = EarlyTomPipeline.from_pretrained(model, config=exported.config, backend="torch", **common)
    runs = {}
    for name, pipeline in (("onnxruntime", exported), ("torch", stock)):
        say(f"artifact path: {name} on {target} ...")
        pipeline(video, prompt, max_new_tokens=max_new_tokens)  # warm: TTFT of a warm call
        found = pipeline(video, prompt, max_new_tokens=max_new_tokens)
        runs[name] = {key: getattr(found, key) for key in AGREEMENT}
        runs[name] |= {
            "ttft_ms": found.ttft_ms.to_dict(),
            "dtype": found.extra.get("dtype"),
            "text": found.text,
        }
    config = exported.config.to_dict()
    del exported, stock  # the next steps load a larger model
    if target.type == "cuda":
        torch.cuda.empty_cache()
    agree = {key: runs["onnxruntime"][key] == runs["torch"][key] for key in AGREEMENT}
    return {"folder": str(folder), "model": model, "device": str(target), "frames": frames,
            "max_new_tokens": max_new_tokens, "config": config, "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "note": "correctness, not speed: ONNX Runtime may be a CPU build here",
            "runs": runs, "agree": agree, "all_agree": all(agree.values())}  # fmt: skip


def profile_settings(loaded: Any, video: Any, retention: float, frames: int, prompt: str) -> list[dict]:
    """One warm call of the stock model and of EarlyTom at `retention` under torch.profiler."""
    from earlytom.config import EarlyTomConfig, preset
    from earlytom.runtime.op_profile import format_profile, profile_call
    from earlytom.runtime.pipeline import EarlyTomPipeline
    from earlytom.runtime.timing import STAGES

    profiles = []
    for label, config in (
        ("baseline", EarlyTomConfig(enabled=False)),
        (f"{retention:.0%}", preset(retention=retention)),
    ):
        pipeline = EarlyTomPipeline(loaded, config, num_frames=frames)
        pipeline(video, prompt, max_new_tokens=1)  # warm: the profile is of a warm call
        found = profile_call(
            label, lambda p=pipeline: p(video, prompt, max_new_tokens=1), timer_syncs=2 * len(STAGES)
        )
        say(format_profile(found))
        profiles.append(found.to_dict())
    return profiles


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--out", type=Path, help="folder for every JSON, PNG and XML written (required unless --write-frames)"
    )
    add("--model", default="llava-ov-7b", help="architecture, built with random weights")
    add(
        "--video", type=Path, default=DEFAULT_VIDEO, help="a video, or a .npz frames file (no decoder needed)"
    )
    add("--frames", type=int, default=32)
    add("--write-frames", type=Path, metavar="FILE", help="decode --video into a .npz frames file and exit")
    add("--retention", default="0.1,0.15,0.2,0.25")
    add("--runs", type=int, default=10)
    add("--warmup", type=int, default=3)
    add("--device", default="auto")
    add("--prompt", default="Describe the video.")
    add("--skip-tests", action="store_true", help="do not run the GPU-only tests")
    add("--gpu-tests", nargs="*", default=["tests"], help="paths given to pytest -m gpu")
    add("--no-profile", action="store_true", help="skip the torch.profiler step")
    add("--artifacts", type=Path, help="an earlytom-export folder for the artifact_path step")
    add("--artifact-model", default="tiny", help="the model the --artifacts folder was exported from")
    add("--max-new-tokens", type=int, default=8, help="tokens generated in the artifact_path step")
    add("--cache-dir", type=Path, help="the earlytom cache ($XDG_CACHE_HOME/earlytom): tiny, plugins/")
    add("--label", default="", help="prefix of every file name written, e.g. cpu-plumbing")
    return parser.parse_args()


def check_options(options: argparse.Namespace) -> None:
    """Every check that needs no work, so that a bad option fails before anything is written."""
    from earlytom.cli.bench import parse_retentions
    from earlytom.errors import InputError
    from earlytom.runtime.bench import check_bench_inputs
    from earlytom.runtime.bench_report import require_matplotlib

    if options.out is None:
        raise InputError("--out is required: name the folder for the results")
    options.retentions = parse_retentions(options.retention)
    check_bench_inputs(options.retentions, task="videomme", backend="torch", frames=options.frames,
                       runs=options.runs, warmup=options.warmup)  # fmt: skip
    require_matplotlib()
    if options.cache_dir is not None:
        if options.cache_dir.name != "earlytom":
            raise InputError(f"--cache-dir {options.cache_dir} must be the earlytom folder of a cache "
                             "($XDG_CACHE_HOME/earlytom): pass the folder named earlytom")  # fmt: skip
        # One cache for every step, the GPU tests' and the kernel bench's subprocesses included.
        os.environ["XDG_CACHE_HOME"] = str(options.cache_dir.resolve().parent)
    if options.artifacts is not None and not (options.artifacts / "manifest.json").is_file():
        raise InputError(
            f"--artifacts {options.artifacts} has no manifest.json: pass an earlytom-export folder"
        )


def main() -> int:
    options = parse_options()
    from earlytom.models.frames_file import save_frames_file
    from earlytom.models.video import load_video_reporting
    from earlytom.runtime.environment import device_name, device_slug, slug, versions
    from earlytom.runtime.pipeline import resolve_device

    if options.write_frames is not None:
        video = load_video_reporting(options.video, options.frames, say)
        path = save_frames_file(video, options.write_frames)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {options.frames} frames of {video.source}")
        return 0
    check_options(options)
    target = resolve_device(options.device)
    video = load_video_reporting(options.video, options.frames, say)  # a bad video fails before any work
    out, prefix = options.out, f"{options.label}-" if options.label else ""
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.now().astimezone().isoformat(timespec="seconds")
    header = {
        "date": date, "command": shlex.join([sys.executable, *sys.argv]), "device": device_name(target),
        "model": options.model, "random_weights": True, "frames": options.frames, "versions": versions(),
        "video": {"path": str(options.video), "source": video.source, "decoder": video.decoder,
                  "total_frames": video.total_frames, "sampled_indices": list(video.indices)},
        "paper": PAPER, "targets": TARGETS,
    }  # fmt: skip
    record = SuiteRecord(
        out / f"suite-{prefix}{device_slug(target)}-{slug(options.model)}-{date[:10]}.json", header
    )
    signal.signal(signal.SIGTERM, _interrupt)
    run_steps(record, options, video, target, prefix)
    say(f"wrote {record.path}")
    print(format_summary(record.data))
    return 1 if any(step["status"] == "failed" for step in record.data["steps"].values()) else 0


def run_steps(record: SuiteRecord, options: argparse.Namespace, video: Any, target: torch.device,
              prefix: str) -> None:  # fmt: skip
    from earlytom.models.flops_shapes import shape_from_config
    from earlytom.models.loading import load_model
    from earlytom.runtime.bench import run_bench
    from earlytom.runtime.bench_report import format_table, write_results
    from earlytom.runtime.pipeline import default_dtype

    out = options.out
    skip_tests = {"skipped": "--skip-tests"}
    record.run(
        "gpu_tests",
        lambda: skip_tests if options.skip_tests else run_gpu_tests(out, options.gpu_tests, prefix),
    )
    record.run("token_select_bench", lambda: run_kernel_bench(out))
    record.run("artifact_path", lambda: run_artifact_path(
        options.artifacts, video, target, model=options.artifact_model, cache_dir=options.cache_dir,
        prompt=options.prompt, max_new_tokens=options.max_new_tokens))  # fmt: skip
    built: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        say(f"loading {options.model} (random weights) on {target} ...")
        built["loaded"] = load_model(options.model, device=target, dtype=default_dtype(target),
                                     random_weights=True, cache_dir=options.cache_dir)  # fmt: skip
        return {"model": options.model, "device": str(target), "dtype": str(default_dtype(target))}

    def bench() -> dict[str, Any]:
        if "loaded" not in built:
            return {"skipped": "model_build failed"}
        report = run_bench(
            options.model, video, options.retentions, device=str(target), random_weights=True,
            num_frames=options.frames, runs=options.runs, warmup=options.warmup, prompt=options.prompt,
            command=record.data["command"], progress=say, post_encoder=True, loaded=built["loaded"],
            cache_dir=options.cache_dir,
        )  # fmt: skip
        say(format_table(report))
        files = [path.rename(path.with_name(prefix + path.name)) for path in write_results(report, out)]
        result = report.to_dict()
        record.data["summary"] = summary_rows(result, shape_from_config(built["loaded"].model.config))
        record.data["bench_files"] = [path.name for path in files]
        return result

    def profile() -> dict[str, Any]:
        if options.no_profile:
            return {"skipped": "--no-profile"}
        if "loaded" not in built:
            return {"skipped": "model_build failed"}
        found = profile_settings(
            built["loaded"], video, min(options.retentions), options.frames, options.prompt
        )
        return {"settings": found}

    record.run("model_build", build)
    record.data["model_build_s"] = record.data["steps"]["model_build"].get("seconds")
    record.run("bench", bench)
    record.run("profile", profile)


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


if __name__ == "__main__":
    from earlytom.errors import EarlyTomError

    try:
        sys.exit(main())
    except EarlyTomError as exc:  # a user error: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Interrupted:
        print("error: stopped by a signal; the finished steps are in the suite JSON", file=sys.stderr)
        sys.exit(124)

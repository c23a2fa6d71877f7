"""The performance evidence in one call: GPU tests, the TokenSelect kernel bench, TTFT and FLOPs.

Steps, each recorded in `suite-<device>-<model>-<date>.json` under --out, whatever its outcome:
  1. the GPU-only tests (`pytest -m gpu`), with their pass/skip/fail counts;
  2. benchmarks/token_select_bench.py (CUDA only);
  3. `earlytom bench` in-process: the stock model, EarlyTom at each retention and the post-encoder
     baseline at each retention, on one loaded model (random weights: timing, not accuracy),
     writing `<device>-<model>-<date>.json` and `.png`;
  4. torch.profiler over one warm call of the baseline and of EarlyTom at the lowest retention:
     the top ops by device time (CPU time without a GPU) and the host-device syncs;
  5. a short table, printed last: TTFT per setting, speed-up, visual tokens, frames per stage,
     FLOPs in both conventions, with the paper's A100 numbers beside them.

    python benchmarks/gpu_suite.py --out benchmarks/results                      # 7B, 32 frames
    python benchmarks/gpu_suite.py --out /tmp/suite --model llava-ov-0.5b --frames 8 --device cpu \\
        --runs 1 --warmup 1 --skip-tests                                         # plumbing on a CPU

The video needs PyAV; the kernel bench and the kernel test need libearlytom_kernels.so for the
GPU's architecture (`earlytom build-plugins --arch 90-real`) in $XDG_CACHE_HOME/earlytom/plugins.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "jobs.mp4"
# The paper's TTFT table (LLaVA-OV-7B, 32 frames, A100, trained weights, 10 % retention).
PAPER = {"device": "NVIDIA A100", "baseline_ttft_ms": 889.9, "earlytom_ttft_ms": 336.2, "speedup": 2.65,
         "baseline_tflops": 82.6, "earlytom_tflops": 32.2, "token_processing_ms": {"EarlyTom": 35,
         "HoliTom": 142}}  # fmt: skip
TARGETS = {"speedup_at_10_percent": 3.0, "token_processing_ms": 5.0}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_gpu_tests(out: Path, paths: list[str]) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess; counts from its JUnit XML (every test skips without CUDA)."""
    junit = out / "gpu-tests.xml"
    # A module that cannot be imported here (a missing optional package) must not stop the rest.
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={junit}", *paths]  # fmt: skip
    say(f"GPU tests: {shlex.join(command)}")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {"command": shlex.join(command), "returncode": done.returncode,
                              "seconds": round(time.perf_counter() - started, 1),
                              "output_tail": (done.stdout + done.stderr)[-3000:]}  # fmt: skip
    if junit.is_file():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        if suite is not None:
            counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
            result["counts"] = counts
    return result


def run_kernel_bench(out: Path) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "needs a CUDA device"}
    command = [sys.executable, str(REPO / "benchmarks" / "token_select_bench.py"), "--out", str(out)]
    say(f"TokenSelect bench: {shlex.join(command)}")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {"command": shlex.join(command), "returncode": done.returncode,
                              "output_tail": (done.stdout + done.stderr)[-3000:]}  # fmt: skip
    written = sorted(out.glob("token_select-*.json"))
    if done.returncode == 0 and written:
        result["result"] = json.loads(written[-1].read_text())
    return result


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


def paper_count_tflops(shape: Any, row: dict[str, Any]) -> float:
    """The row's prefill in the paper's convention with no prompt tokens, as the paper counts."""
    from earlytom.compression.flops import prefill_flops

    inner = row["inner_merge"]
    layers = row["config"]["prune_layers"] if row["method"] == "earlytom" else ()
    flops = prefill_flops(shape, frames_per_stage=row["frames_per_stage"], prune_layers=layers,
                          visual_tokens=row["visual_tokens"], prompt_tokens=0,
                          inner_layer=inner["layer"] if inner["counted"] else None,
                          inner_ratio=inner["ratio"] if inner["counted"] else 0.0,
                          convention="paper")  # fmt: skip
    return round(flops.total / 1e12, 2)


def summary_rows(bench: dict[str, Any], shape: Any) -> list[dict[str, Any]]:
    rows = [bench["baseline"]]
    post = {row["retention"]: row for row in bench["post_encoder"]}
    for row in bench["earlytom"]:
        rows.append(row)
        if row["retention"] in post:
            rows.append(post[row["retention"]])
    return [{
        "label": row["label"], "method": row["method"], "ttft_p50_ms": row["ttft_ms"]["p50"]["total"],
        "ttft_p90_ms": row["ttft_ms"]["p90"]["total"],
        "stages_p50_ms": {k: v for k, v in row["ttft_ms"]["p50"].items() if k != "total"},
        "speedup": round(row["speedup"], 3), "visual_tokens": row["visual_tokens"],
        "frames_per_stage": row["frames_per_stage"],
        "tflops": {c: round(row["flops"][c]["total"] / 1e12, 2) for c in row["flops"]}
        | {"paper, no prompt": paper_count_tflops(shape, row)},
    } for row in rows]  # fmt: skip


def format_summary(suite: dict[str, Any]) -> str:
    bench = suite["bench"]
    head = (f"{'setting':<11}{'TTFT p50':>10}{'vision':>9}{'tokens':>8}{'prefill':>9}{'speed-up':>10}"
            f"{'visual tok':>12}  {'frames':<14}{'TFLOPs paper':>13}{'+prompt':>9}"
            f"{'per-frame':>10}")  # fmt: skip
    lines = [
        f"{suite['model']} · {suite['frames']} frames · {bench['dtype']} · {suite['device']} · "
        f"p50 of {bench['runs']} runs after {bench['warmup']} warm-up · ms",
        head, "-" * len(head),
    ]  # fmt: skip
    for row in suite["summary"]:
        stages, tflops = row["stages_p50_ms"], row["tflops"]
        lines.append(
            f"{row['label']:<11}{row['ttft_p50_ms']:>10.1f}{stages['vision_encoding']:>9.1f}"
            f"{stages['token_processing']:>8.1f}{stages['llm_prefill']:>9.1f}{row['speedup']:>9.2f}×"
            f"{row['visual_tokens']:>12}  {'→'.join(map(str, row['frames_per_stage'])):<14}"
            f"{tflops['paper, no prompt']:>13.4g}{tflops['paper']:>9.4g}{tflops['per-frame']:>10.4g}"
        )
    paper = suite["paper"]
    lines.append(
        f"paper ({paper['device']}, 7B, 32 frames, 10 %): {paper['baseline_ttft_ms']} → "
        f"{paper['earlytom_ttft_ms']} ms ({paper['speedup']}×), {paper['baseline_tflops']} → "
        f"{paper['earlytom_tflops']} TFLOPs (paper convention, no prompt tokens)"
    )
    lines.append(f"GPU tests: {outcome(suite['gpu_tests'])}")
    kernel = suite["token_select_bench"]
    medians = kernel.get("result", {}).get("median_ms")
    timed = ", ".join(f"{name} {ms:.4f} ms" for name, ms in medians.items()) if medians else ""
    lines.append(f"TokenSelect: {timed or outcome(kernel)}")
    return "\n".join(lines)


def outcome(step: dict[str, Any]) -> str:
    if "skipped" in step:
        return f"not run ({step['skipped']})"
    counts = step.get("counts")
    if counts:
        failed = counts["failures"] + counts["errors"]
        return f"{counts['passed']} passed, {counts['skipped']} skipped, {failed} failed"
    return f"exit {step.get('returncode')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for every JSON, PNG and XML written")
    parser.add_argument("--model", default="llava-ov-7b", help="architecture, built with random weights")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--retention", default="0.1,0.15,0.2,0.25")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompt", default="Describe the video.")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the GPU-only tests")
    parser.add_argument("--gpu-tests", nargs="*", default=["tests"], help="paths given to pytest -m gpu")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step")
    options = parser.parse_args()

    from earlytom.cli.bench import parse_retentions
    from earlytom.models.flops_shapes import shape_from_config
    from earlytom.models.registry import load_model
    from earlytom.models.video import load_video_reporting
    from earlytom.runtime.bench import check_bench_inputs, run_bench
    from earlytom.runtime.bench_report import format_table, require_matplotlib, result_stem, write_results
    from earlytom.runtime.environment import versions
    from earlytom.runtime.pipeline import default_dtype, resolve_device

    retentions = parse_retentions(options.retention)
    check_bench_inputs(retentions, task="videomme", backend="torch", frames=options.frames, runs=options.runs,
                       warmup=options.warmup)  # fmt: skip
    require_matplotlib()
    target = resolve_device(options.device)
    video = load_video_reporting(options.video, options.frames, say)  # a bad video fails before any work
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join([sys.executable, *sys.argv])

    tests = {"skipped": "--skip-tests"} if options.skip_tests else run_gpu_tests(out, options.gpu_tests)
    kernel = run_kernel_bench(out)

    say(f"loading {options.model} (random weights) on {target} ...")
    started = time.perf_counter()
    loaded = load_model(options.model, device=target, dtype=default_dtype(target), random_weights=True)
    load_s = time.perf_counter() - started
    report = run_bench(
        options.model, options.video, retentions, device=str(target), random_weights=True,
        num_frames=options.frames, runs=options.runs, warmup=options.warmup, prompt=options.prompt,
        command=command, progress=say, post_encoder=True, loaded=loaded,
    )  # fmt: skip
    say(format_table(report))
    json_path, png_path = write_results(report, out)
    profiles = (
        []
        if options.no_profile
        else profile_settings(loaded, video, min(retentions), options.frames, options.prompt)
    )

    bench, shape = report.to_dict(), shape_from_config(loaded.model.config)
    suite = {
        "date": report.date, "command": command, "device": report.device_name, "model": options.model,
        "random_weights": True, "frames": options.frames, "versions": versions(),
        "model_build_s": round(load_s, 1), "bench_files": [json_path.name, png_path.name],
        "gpu_tests": tests, "token_select_bench": kernel, "summary": summary_rows(bench, shape),
        "paper": PAPER, "targets": TARGETS, "profile": profiles, "bench": bench,
    }  # fmt: skip
    suite_path = out / f"suite-{result_stem(report)}.json"
    suite_path.write_text(json.dumps(suite, indent=2) + "\n")
    say(f"wrote {json_path}, {png_path}, {suite_path}")
    print(format_summary(suite))


if __name__ == "__main__":
    from earlytom.errors import EarlyTomError

    try:
        main()
    except EarlyTomError as exc:  # a user error: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

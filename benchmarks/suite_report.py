"""The GPU suite's summary: rows per setting from the bench report, and the short table printed last.

Kept apart from benchmarks/gpu_suite.py (which runs the steps) so each file holds one concern.
"""

from __future__ import annotations

from typing import Any

# The paper's TTFT table (LLaVA-OV-7B, 32 frames, A100, trained weights, 10 % retention).
PAPER = {"device": "NVIDIA A100", "baseline_ttft_ms": 889.9, "earlytom_ttft_ms": 336.2, "speedup": 2.65,
         "baseline_tflops": 82.6, "earlytom_tflops": 32.2, "token_processing_ms": {"EarlyTom": 35,
         "HoliTom": 142}}  # fmt: skip
TARGETS = {"speedup_at_10_percent": 3.0, "token_processing_ms": 5.0}


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


def format_bench(suite: dict[str, Any]) -> list[str]:
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
    return lines


def format_summary(suite: dict[str, Any]) -> str:
    steps = suite["steps"]
    lines = format_bench(suite) if "summary" in suite else [f"bench: {outcome(steps['bench'])}"]
    paper = suite["paper"]
    lines.append(
        f"paper ({paper['device']}, 7B, 32 frames, 10 %): {paper['baseline_ttft_ms']} → "
        f"{paper['earlytom_ttft_ms']} ms ({paper['speedup']}×), {paper['baseline_tflops']} → "
        f"{paper['earlytom_tflops']} TFLOPs (paper convention, no prompt tokens)"
    )
    tests = suite.get("gpu_tests", {})
    lines.append(
        f"GPU tests: {format_test_counts(tests) if 'counts' in tests else outcome(steps['gpu_tests'])}"
    )
    medians = suite.get("token_select_bench", {}).get("result", {}).get("median_ms")
    timed = ", ".join(f"{name} {ms:.4f} ms" for name, ms in medians.items()) if medians else ""
    lines.append(f"TokenSelect: {timed or outcome(steps['token_select_bench'])}")
    lines.append(f"artifact path: {artifact_line(suite) or outcome(steps['artifact_path'])}")
    lines.append("steps: " + " · ".join(f"{name} {step['status']}" for name, step in steps.items()))
    return "\n".join(lines)


def artifact_line(suite: dict[str, Any]) -> str:
    found = suite.get("artifact_path")
    if suite["steps"]["artifact_path"]["status"] != "ok" or not found:
        return ""
    ort, ref = found["runs"]["onnxruntime"], found["runs"]["torch"]
    frames = " / ".join("→".join(map(str, r["frames_per_stage"])) for r in (ort, ref))
    agree = (
        "all agree"
        if found["all_agree"]
        else "differ in " + ", ".join(k for k, v in found["agree"].items() if not v)
    )
    tokens, ttft = (" / ".join(str(r["visual_tokens_after"]) for r in (ort, ref)),
                    " / ".join(f"{r['ttft_ms']['total']:.1f}" for r in (ort, ref)))  # fmt: skip
    return (f"{found['model']} on {found['device']}, onnxruntime / torch: frames {frames}, "
            f"visual tokens {tokens}, TTFT {ttft} ms; {agree}")  # fmt: skip


def format_test_counts(step: dict[str, Any]) -> str:
    counts, modules = step["counts"], step.get("collection_errors", [])
    text = (f"{counts['passed']} passed, {counts['skipped']} skipped, {counts['failures']} failed, "
            f"{counts['errors']} errors")  # fmt: skip
    if modules:
        names = ", ".join(
            f"{m['module']}" + (f" ({m['missing']} missing)" if m["missing"] else "") for m in modules
        )
        text += f"; {len(modules)} modules not collected: {names}"
    return text


def outcome(step: dict[str, Any]) -> str:
    if step["status"] == "skipped":
        return f"not run ({step['reason']})"
    return step["status"] + (f" ({step['error']})" if "error" in step else "")

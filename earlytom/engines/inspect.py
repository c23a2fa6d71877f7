"""`earlytom inspect DIR`: what an artifact folder holds, from its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from earlytom.exporter.manifest import read_manifest


def describe_artifacts(folder: Path) -> str:
    manifest = read_manifest(folder)
    config, model = manifest["earlytom_config"], manifest["model"]
    validation, versions = manifest["validation"], manifest["versions"]
    passed = validation["checks"] - validation["failed"]
    lines = [
        f"{folder}",
        f"  model       {model['name']} ({model['source']}), weights sha256 {model['weights_sha256'][:16]}",
        f"  earlytom    retention {config['retention']}, tau {config['tau']}, prune layers "
        f"{config['prune_layers']}, max window {config['max_window']}, "
        f"drop last middle {config['drop_last_middle']}",
        f"  onnx        {manifest['precision']}, opset {manifest['opset']}; torch {versions['torch']}, "
        f"transformers {versions['transformers']}, onnx {versions['onnx']}",
        f"  validation  {'passed' if validation['passed'] else 'FAILED'}: {passed}/{validation['checks']} "
        f"checks, min cosine {validation['min_cosine']:.6f} on {', '.join(validation['cases'])}",
        "  segments",
    ]
    for segment in manifest["segments"]:
        io = f"{_io(segment['inputs'])} -> {_io(segment['outputs'])}"
        lines.append(f"    {segment['name']:<9} layers {_layers(segment):<7} {io}")
    engines = manifest.get("engines")
    if not engines:
        lines.append("  engines     none (exported with --skip-build)")
        return "\n".join(lines)
    profile = engines["profile"]
    major, minor = engines["compute_capability"]
    lines.append(
        f"  engines     {engines['builder']} {engines['version']}, target {engines['target']} "
        f"(SM{major}{minor}), frames {profile['min_frames']}/{profile['opt_frames']}/{profile['max_frames']}"
    )
    for entry in engines["files"]:
        plan = Path(folder) / entry["file"]
        size = plan.stat().st_size / 2**20 if plan.exists() else 0.0
        counts = sorted(entry["network_layers"].items(), key=lambda kv: -kv[1])[:6]
        layers = ", ".join(f"{kind.lower()} {n}" for kind, n in counts)
        total = sum(entry["network_layers"].values())
        token_select = ""
        if entry["segment"] == "final":
            how = "the EarlyTomTokenSelect plugin" if entry["plugin_layers"] else "standard layers"
            token_select = f"; TokenSelect as {how}"
        lines.append(
            f"    {entry['file']:<14} {size:7.1f} MiB, {total} parsed layers ({layers}){token_select}"
        )
    return "\n".join(lines)


def _layers(segment: dict[str, Any]) -> str:
    return f"{segment['layers'][0]}-{segment['layers'][1]}" if segment["layers"] else "none"


def _io(tensors: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['name']}{tuple(t['shape'])}:{t['dtype']}".replace("'", "") for t in tensors)

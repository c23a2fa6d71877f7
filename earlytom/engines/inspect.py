"""`earlytom inspect DIR`: what an artifact folder holds, from its verified manifest."""

from __future__ import annotations

from pathlib import Path

from earlytom.artifact import Artifact, TensorEntry


def describe_artifacts(folder: Path) -> str:
    """A summary of a folder; reading it verifies the manifest and every file's hash."""
    artifact = Artifact.read(folder)
    manifest = artifact.manifest
    config, model, validation, versions = (
        manifest.config,
        manifest.model,
        manifest.validation,
        manifest.versions,
    )
    passed = validation.checks - validation.failed
    cosine = "n/a" if validation.min_cosine is None else f"{validation.min_cosine:.6f}"
    lines = [
        f"{folder}",
        f"  model       {model.name} ({model.source}), fingerprint {model.fingerprint[:16]}",
        f"  earlytom    retention {config.retention}, tau {config.tau}, prune layers "
        f"{list(config.prune_layers)}, max window {config.max_window}, "
        f"drop last middle {config.drop_last_middle}, tie band {manifest.tie_band:g}",
        f"  onnx        {manifest.precision}, opset {manifest.opset}; torch {versions.get('torch')}, "
        f"transformers {versions.get('transformers')}, onnx {versions.get('onnx')}",
        f"  validation  {'passed' if validation.passed else 'FAILED'}: {passed}/{validation.checks} "
        f"checks, {validation.near_tie_flips} near-tie flips, min cosine {cosine} "
        f"on {', '.join(validation.cases)}",
        "  files       every hash matches the manifest",
        "  stages",
    ]
    for segment in manifest.segments:
        layers = f"{segment.layers[0]}-{segment.layers[1]}" if segment.layers else "none"
        lines.append(
            f"    {segment.name:<9} layers {layers:<7} {_io(segment.inputs)} -> {_io(segment.outputs)}"
        )
    engines = manifest.engines
    if engines is None:
        lines.append("  engines     none (exported with --skip-build)")
        return "\n".join(lines)
    profile = engines.profile
    major, minor = engines.compute_capability
    lines.append(
        f"  engines     {engines.builder} {engines.version}, target {engines.target} "
        f"(SM{major}{minor}), frames {profile.min_frames}/{profile.opt_frames}/{profile.max_frames}"
    )
    for entry in engines.files:
        size = artifact.path(entry.file).stat().st_size / 2**20
        counts = sorted(entry.network_layers.items(), key=lambda kv: -kv[1])[:6]
        layers = ", ".join(f"{kind.lower()} {n}" for kind, n in counts)
        total = sum(entry.network_layers.values())
        token_select = ""
        if artifact.segment(entry.segment).kind == "select":
            how = "the EarlyTomTokenSelect plugin" if entry.plugin_layers else "standard layers"
            token_select = f"; TokenSelect as {how}"
        lines.append(f"    {entry.file:<14} {size:7.1f} MiB, {total} parsed layers ({layers}){token_select}")
    return "\n".join(lines)


def _io(tensors: tuple[TensorEntry, ...]) -> str:
    return ", ".join(f"{t.name}{tuple(t.shape)}:{t.dtype}".replace("'", "") for t in tensors)

"""export_segments: model -> validated ONNX stages and their typed artifact (DESIGN §4, §7)."""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from earlytom.artifact import (
    FORMAT,
    Artifact,
    Geometry,
    Manifest,
    ModelEntry,
    ValidationSummary,
    package_versions,
    write_json_atomic,
)
from earlytom.compression import tie_band_for
from earlytom.config import EarlyTomConfig
from earlytom.errors import ExportError, ValidationError
from earlytom.exporter.onnx_export import SegmentFile, export_segment
from earlytom.exporter.validate import ValidationReport, validate_segments
from earlytom.models.segments import build_stages
from earlytom.models.vision import LoadedVision, VisionSide, load_vision_side
from earlytom.ops.onnx_function import ONNX_OPSET
from earlytom.vision_path import planner_for

Progress = Callable[[str], None]
PRECISIONS = {"float16": torch.float16, "float32": torch.float32}
# plugin: one earlytom::EarlyTomTokenSelect node (TensorRT resolves it to the plugin, ONNX Runtime
# runs its function body); onnx: the body inlined into standard ops, so no plugin is ever needed.
TOKEN_SELECT_MODES = ("plugin", "onnx")


@dataclass(frozen=True)
class ExportSpec:
    model: str = "tiny"
    config: EarlyTomConfig = field(default_factory=EarlyTomConfig)
    random_weights: bool = False
    precision: str = "float16"
    opset: int = ONNX_OPSET
    validation_video: Path | None = None  # real frames; random frames are always checked too
    validation_frames: int = 8
    cache_dir: Path | None = None
    token_select: str = "onnx"
    allow_partial_video: bool = False  # a truncated validation video: use the frames that decode

    def __post_init__(self) -> None:
        if self.token_select not in TOKEN_SELECT_MODES:
            raise ExportError(
                f"unknown token-select mode '{self.token_select}': choose {' or '.join(TOKEN_SELECT_MODES)}"
            )
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown precision '{self.precision}': choose {' or '.join(PRECISIONS)}")
        from earlytom.models.registry import family_of

        if family_of(self.model).adapter == "qwen-vl":
            raise ExportError(QWEN_NOT_EXPORTED)
        if not self.config.enabled:
            raise ExportError(
                "nothing to export with compression disabled: the stock encoder needs no segments"
            )
        if self.config.budget == "exact":
            raise ExportError(
                "budget 'exact' is not exportable yet: the TokenSelect op and its TensorRT plugin implement "
                "the released budget; run the exact budget with --backend torch (or vLLM's video route)"
            )
        if self.validation_frames < 2:
            raise ExportError(f"validation_frames={self.validation_frames}: validate on at least 2 frames")
        if self.validation_video is not None and not Path(self.validation_video).is_file():
            raise ExportError(f"validation video {self.validation_video} does not exist")


# Why Qwen2.5-VL has no export yet (README, "Model families").
QWEN_NOT_EXPORTED = (
    "Qwen2.5-VL is not exportable yet: its stages read per-video rotary tables (S, head size) and an "
    "(S, S) window mask, where S, the patches per frame, follows each video's resized frame size, so "
    "every segment needs a second dynamic axis, the engines a profile over it and TokenSelect a "
    "per-video token grid; run it with --backend torch"
)


def export_segments(spec: ExportSpec, folder: Path, progress: Progress = lambda _: None) -> Artifact:
    """Every stage's .onnx and validation.json in `folder`, validated: the artifact (no engines yet)."""
    frames = _validation_frames(spec)  # decoded first: a bad video fails before the export's work
    progress(f"loading the vision side of {spec.model}")
    loaded = load_vision_side(spec.model, random_weights=spec.random_weights, cache_dir=spec.cache_dir)
    vision = loaded.vision
    spec.config.check_model(vision_layers=vision.num_layers, language_layers=None)
    files = _export_stages(spec, vision, folder, progress)
    report = _validate(spec, vision, files, progress, frames)
    write_json_atomic(folder / "validation.json", report.to_dict())
    if not report.passed:
        kept = Path(tempfile.mkstemp(prefix="earlytom-validation-", suffix=".json")[1])
        kept.write_text(json.dumps(report.to_dict(), indent=2))
        raise ValidationError(
            f"ONNX Runtime disagrees with the PyTorch reference in {len(report.failures)} of "
            f"{len(report.checks)} checks ({report.describe_failures()}); nothing was written, "
            f"report: {kept}",
            report,
        )
    if report.near_tie_flips:
        progress(f"{len(report.near_tie_flips)} near-tie decision flip(s) reported in validation.json")
    return Artifact(folder, _manifest(spec, loaded, files, report)).checked()


def _export_stages(
    spec: ExportSpec, vision: VisionSide, folder: Path, progress: Progress
) -> list[SegmentFile]:
    exported = copy.deepcopy(vision).to(PRECISIONS[spec.precision])  # fp32 `vision` stays the reference
    files: list[SegmentFile] = []
    for module in build_stages(exported, spec.config, attention_chunk=None):
        start = time.perf_counter()
        progress(f"exporting {module.spec.name} ({module.spec.describe()}) to ONNX, {spec.precision}")
        path = folder / f"{module.spec.name}.onnx"
        inline = spec.token_select == "onnx"
        files.append(
            export_segment(
                module, exported, path, PRECISIONS[spec.precision], spec.opset, inline_token_select=inline
            )
        )
        progress(f"exported {path.name} in {time.perf_counter() - start:.1f} s")
    return files


def _manifest(
    spec: ExportSpec, loaded: LoadedVision, files: list[SegmentFile], report: ValidationReport
) -> Manifest:
    summary = report.summary()
    return Manifest(
        format=FORMAT,
        model=ModelEntry(spec.model, loaded.source, loaded.fingerprint),
        config=spec.config,
        config_sha256=spec.config.config_hash(),
        precision=spec.precision,
        tie_band=tie_band_for(spec.precision),
        opset=spec.opset,
        token_select=spec.token_select,
        geometry=_geometry(loaded.vision),
        segments=tuple(f.entry(files[0].path.parent) for f in files),
        versions=package_versions(),
        validation=ValidationSummary(**(summary | {"cases": tuple(summary["cases"])})),
    )


def _validation_frames(spec: ExportSpec) -> torch.Tensor | None:
    """The validation video's sampled frames (T, H, W, 3) uint8, or None without one."""
    from earlytom.models.video import load_video

    if spec.validation_video is None:
        return None
    video = load_video(spec.validation_video, spec.validation_frames, allow_partial=spec.allow_partial_video)
    return video.frames


def _validate(
    spec: ExportSpec, vision: VisionSide, files: list[SegmentFile], progress: Progress,
    frames: torch.Tensor | None,
) -> ValidationReport:  # fmt: skip
    from earlytom.models.preprocess import preprocess_frames

    cases: dict[str, torch.Tensor] = {}
    if spec.validation_video is not None and frames is not None:
        name = f"{Path(spec.validation_video).name} ({frames.shape[0]} frames)"
        cases[name] = preprocess_frames(frames, size=vision.image_size)
    generator = torch.Generator().manual_seed(0)
    size = vision.image_size
    cases["random frames (seed 0)"] = (
        torch.rand(spec.validation_frames, 3, size, size, generator=generator) * 2 - 1
    )
    reference = build_stages(vision, spec.config)
    progress(f"validating in ONNX Runtime against the fp32 PyTorch reference: {', '.join(cases)}")
    start = time.perf_counter()
    report = validate_segments(
        files,
        reference,
        cases,
        planner_for(spec.config, tie_band=tie_band_for(spec.precision)),
        precision=spec.precision,
        tokens_per_frame=vision.pooled_tokens_per_frame,
    )
    summary = report.summary()
    verdict = "passed" if report.passed else "FAILED"
    progress(
        f"validation {verdict}: {summary['checks'] - summary['failed']}/{summary['checks']} checks, "
        f"min cosine {summary['min_cosine']:.6f} ({time.perf_counter() - start:.1f} s)"
    )
    return report


def _geometry(vision: VisionSide) -> Geometry:
    return Geometry(
        image_size=vision.image_size,
        tokens_per_frame=vision.tokens_per_frame,
        pooled_tokens_per_frame=vision.pooled_tokens_per_frame,
        vision_hidden_size=vision.hidden_size,
        llm_hidden_size=int(vision.image_newline.shape[0]),
        vision_layers=vision.num_layers,
    )

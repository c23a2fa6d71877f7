"""The video path from an earlytom-export folder: its segments in ONNX Runtime or TensorRT + the planner.

The backend only executes segments; the planner (merges, grouping, frame kinds, budget) is the
shared `run_chain`. The LLM still comes from the Hugging Face model; the folder must have been
exported from the same vision weights (checked by hash) and carries its own EarlyTom setting.
ONNX Runtime uses its CUDA provider when onnxruntime-gpu offers it on a CUDA device, else CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import EngineMismatchError, InputError
from earlytom.exporter.chain import ChainRun, OrtExecutor, run_chain
from earlytom.exporter.manifest import artifact_config, read_manifest, segment_specs
from earlytom.models.encoder import planner_for
from earlytom.models.video_path import VideoTokens
from earlytom.models.vision import VisionSide


@dataclass(frozen=True)
class EncodedChain:
    run: ChainRun


BACKENDS = ("onnxruntime", "tensorrt")


class ArtifactVideoPath:
    """`encode` runs every segment (ONNX Runtime or TensorRT) with merges; `tokens` unpacks the outputs."""

    def __init__(self, folder: Path, llava: Any, *, backend: str = "onnxruntime") -> None:
        from earlytom.exporter.export import weights_sha256

        manifest = read_manifest(folder)
        vision = VisionSide.from_llava(llava)
        if manifest["geometry"]["llm_hidden_size"] != vision.image_newline.shape[0]:
            raise EngineMismatchError(
                f"{folder} was exported for a {manifest['geometry']['llm_hidden_size']}-wide LLM, "
                f"this model is {vision.image_newline.shape[0]} wide: use the matching --model"
            )
        if weights_sha256(vision) != manifest["model"]["weights_sha256"]:
            raise EngineMismatchError(
                f"{folder} was exported from other vision weights than {manifest['model']['name']} loaded "
                "here: re-export it from this model"
            )
        self.config = artifact_config(manifest)
        self.pooled_tokens = int(manifest["geometry"]["pooled_tokens_per_frame"])
        self.specs = segment_specs(manifest)
        self.backend = backend
        self.device = vision.image_newline.device
        if backend == "onnxruntime":
            providers = _ort_providers(self.device)
            self.executors: list[Any] = [
                OrtExecutor(Path(folder) / s["file"], spec, providers)
                for s, spec in zip(manifest["segments"], self.specs, strict=True)
            ]
        elif backend == "tensorrt":
            self.executors = _tensorrt_executors(Path(folder), self.device)
        else:
            raise InputError(
                f"unknown backend '{backend}' for an exported folder: choose {' or '.join(BACKENDS)}"
            )
        self.planner = planner_for(self.config)

    def encode(self, pixel_values: torch.Tensor) -> EncodedChain:
        if self.backend == "onnxruntime":
            pixel_values = pixel_values.float()  # the executor casts to the graph's type
        run = run_chain(
            self.executors, self.specs, pixel_values, self.planner, tokens_per_frame=self.pooled_tokens
        )
        return EncodedChain(run)

    def tokens(self, encoded: EncodedChain) -> VideoTokens:
        run = encoded.run
        return VideoTokens(
            embeds=run.video_tokens.to(self.device),
            frame_ids=run.token_index[:, 0],
            positions=run.token_index[:, 1],
            frames_per_stage=run.frames_per_stage,
            tokens_before=run.frames_per_stage[0] * self.pooled_tokens + 1,
        )


def _ort_providers(device: torch.device) -> tuple[str, ...]:
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


def _tensorrt_executors(folder: Path, device: torch.device) -> list[Any]:
    """One TrtSegment per plan, after the manifest checks and (when needed) the plugin library."""
    from earlytom.engines.builders import load_builder
    from earlytom.engines.check import RuntimeInfo, check_engines
    from earlytom.engines.runner import TrtSegment

    manifest = read_manifest(folder)
    engines = manifest.get("engines")
    if not engines:
        raise EngineMismatchError(f"{folder} has no TensorRT plans (exported with --skip-build): re-export")
    if device.type != "cuda":
        raise InputError(
            "the tensorrt backend runs on an NVIDIA GPU: use --device cuda, or --backend onnxruntime"
        )
    builder = load_builder(engines["builder"])
    major, minor = torch.cuda.get_device_capability(device)
    runtime_info = RuntimeInfo(builder.name, builder.version, (major, minor))
    check_engines(folder, runtime_info)
    trt = builder.module
    if engines.get("plugin") and any(f.get("needs_plugin") for f in engines["files"]):
        from earlytom.trt_plugins.registry import load_plugin_library

        load_plugin_library(trt, folder / engines["plugin"]["file"])
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    return [TrtSegment(trt, runtime, folder / entry["file"]) for entry in engines["files"]]

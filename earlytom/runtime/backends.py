"""The vision path of a pipeline, for one backend: torch modules, ONNX Runtime sessions, TensorRT plans.

Only the executors differ between backends; the planner and the chain loop are the same
(`earlytom.vision_path`). An artifact folder is read and verified once, carries its own EarlyTom
setting and tie band, and must have been exported from the loaded checkpoint (compared by the
checkpoint fingerprint, computed from the files on the CPU, never from live GPU tensors).
"""

from __future__ import annotations

from pathlib import Path

from earlytom.artifact import Artifact
from earlytom.compression import tie_band_for
from earlytom.config import EarlyTomConfig
from earlytom.errors import EngineMismatchError, InputError
from earlytom.models.adapters import adapter_for
from earlytom.models.loading import LoadedModel
from earlytom.models.vision import VisionSide
from earlytom.vision_path import Executor, VisionPath, planner_for, torch_vision_path

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def resolve_backend(backend: str, artifacts: Path | None) -> str:
    """auto -> torch without an artifact folder, onnxruntime with one; the pair must make sense."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend '{backend}': choose {', '.join(BACKENDS)}")
    if backend == "auto":
        return "torch" if artifacts is None else "onnxruntime"
    if backend == "torch" and artifacts is not None:
        raise InputError(
            "backend torch runs the PyTorch modules and takes no engine folder: leave out --engine-dir"
        )
    if backend != "torch" and artifacts is None:
        raise InputError(f"backend {backend} needs an engine folder (--engine-dir) from earlytom-export")
    return backend


def torch_path(
    loaded: LoadedModel, config: EarlyTomConfig, *, method: str, tie_band: float | None
) -> VisionPath:
    vision = adapter_for(loaded.family).vision_side(loaded.model)
    band = tie_band_for(next(vision.parameters()).dtype) if tie_band is None else tie_band
    return torch_vision_path(vision, config, method=method, tie_band=band)


def artifact_path(
    loaded: LoadedModel, artifact: Artifact, *, backend: str, tie_band: float | None
) -> VisionPath:
    """The folder's stages on `backend`, with the folder's setting and (unless given) its tie band."""
    manifest = artifact.manifest
    if loaded.family.adapter != "llava":
        raise EngineMismatchError(
            f"{artifact.folder} holds LLaVA segments and {loaded.name} is a {loaded.family.name} model: "
            "run it with --backend torch"
        )
    vision = VisionSide.from_llava(loaded.model.model)
    width = int(vision.image_newline.shape[0])
    if manifest.geometry.pooled_tokens_per_frame != vision.pooled_tokens_per_frame:
        raise EngineMismatchError(
            f"{artifact.folder} pools to {manifest.geometry.pooled_tokens_per_frame} tokens per frame and "
            f"{loaded.name} to {vision.pooled_tokens_per_frame} ({vision.pooling} pooling): re-export it "
            "from this model"
        )
    if manifest.geometry.llm_hidden_size != width:
        raise EngineMismatchError(
            f"{artifact.folder} was exported for a {manifest.geometry.llm_hidden_size}-wide LLM, "
            f"this model is {width} wide: use the matching --model"
        )
    if loaded.fingerprint != manifest.model.fingerprint:
        raise EngineMismatchError(
            f"{artifact.folder} was exported from other vision weights than {loaded.name} ({loaded.source}): "
            "re-export it from this model"
        )
    device = vision.image_newline.device
    executors: list[Executor]
    if backend == "onnxruntime":
        from earlytom.exporter.ort_executor import artifact_executors, ort_providers

        executors = [*artifact_executors(artifact, ort_providers(device))]
    elif backend == "tensorrt":
        from earlytom.engines.runner import tensorrt_executors

        executors = [*tensorrt_executors(artifact, device)]
    else:
        raise InputError(
            f"unknown backend '{backend}' for an exported folder: choose onnxruntime or tensorrt"
        )
    band = manifest.tie_band if tie_band is None else tie_band
    planner = planner_for(manifest.config, tie_band=band)
    return VisionPath(executors, planner, tokens_per_frame=manifest.geometry.pooled_tokens_per_frame)

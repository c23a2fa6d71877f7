"""An exported stage run by ONNX Runtime, behind the vision path's executor protocol.

ONNX Runtime reads host (numpy) arrays: inputs are copied to the host and cast to the graph's
declared element types (so an fp32 reference or an fp16 pipeline can feed either graph), and
outputs come back on the device of the inputs. With the CUDA provider the copies stay, a
correctness path more than a fast one; TensorRT is the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from earlytom.artifact import Artifact
from earlytom.errors import ArtifactError, MissingDependencyError
from earlytom.models.segments import SegmentSpec
from earlytom.vision_path import Tensors

NUMPY_TYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64}


def ort_providers(device: torch.device) -> tuple[str, ...]:
    """The CUDA provider on a CUDA device when this onnxruntime build has it, else the CPU."""
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    return ("CPUExecutionProvider",)


def artifact_executors(
    artifact: Artifact, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> list[OrtExecutor]:
    """One session per stage of a verified artifact, made from the file's bytes as they were checked."""
    executors = []
    for spec in artifact.specs:
        file = artifact.segment(spec.name).file
        executors.append(
            OrtExecutor(artifact.path(file), spec, providers, model=artifact.verified_bytes(file))
        )
    return executors


class OrtExecutor:
    """One ONNX Runtime session per stage, made once; called with named tensors. `model`: the
    graph's bytes, already read and checked (else ONNX Runtime reads `path`)."""

    def __init__(
        self,
        path: Path,
        spec: SegmentSpec,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        *,
        model: bytes | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                "onnxruntime is not installed: pip install 'earlytom[onnx]'"
            ) from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT warns about every fp16 node it runs via fp32
        try:
            source = str(path) if model is None else model
            self.session = ort.InferenceSession(source, options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise ArtifactError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from exc
        self.spec = spec
        declared = {i.name: i.type for i in self.session.get_inputs()}
        if set(declared) != set(spec.input_names):
            raise ArtifactError(f"{path} has inputs {sorted(declared)}, expected {list(spec.input_names)}")
        self.types = {name: NUMPY_TYPES[kind] for name, kind in declared.items()}

    def __call__(self, inputs: Tensors) -> Tensors:
        device = inputs[self.spec.input_names[0]].device
        feed = {
            name: _host(inputs[name]).astype(self.types[name], copy=False) for name in self.spec.input_names
        }
        outputs = self.session.run(list(self.spec.output_names), feed)
        return {
            name: torch.from_numpy(np.ascontiguousarray(value)).to(device)
            for name, value in zip(self.spec.output_names, outputs, strict=True)
        }

    def release(self) -> None:
        self.session = None


def _host(tensor: torch.Tensor) -> np.ndarray:
    """A host copy numpy can hold (numpy has no bfloat16: widen it; the graph's cast follows)."""
    tensor = tensor.detach().to("cpu")
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()

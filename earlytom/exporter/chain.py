"""Run exported segments in a chain with the merge planner between them (any executor).

An executor maps named input tensors to named output tensors: a torch segment module, an ONNX
Runtime session, later a TensorRT context. The chain and the planner are the same for all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from earlytom.compression import MergePlanner, SelectionInputs
from earlytom.errors import MissingDependencyError
from earlytom.models.segments import EncoderSegment, FinalSegment, SegmentSpec

Tensors = dict[str, torch.Tensor]
Executor = Callable[[Tensors], Tensors]


@dataclass(frozen=True)
class SegmentRecord:
    """What one segment received and returned in a chain run (for per-segment comparison)."""

    name: str
    inputs: Tensors
    outputs: Tensors


@dataclass(frozen=True)
class ChainRun:
    video_tokens: torch.Tensor  # (N + 1, C)
    token_index: torch.Tensor  # (N, 2) (frame after Stage I, pooled raster position)
    frames_per_stage: tuple[int, ...]
    selection: SelectionInputs
    records: list[SegmentRecord] = field(default_factory=list)


class TorchExecutor:
    """A segment module run eagerly (the reference)."""

    def __init__(self, module: EncoderSegment | FinalSegment) -> None:
        self.module = module
        self.spec = module.spec

    @torch.no_grad()
    def __call__(self, inputs: Tensors) -> Tensors:
        outputs = self.module(*(inputs[name] for name in self.spec.inputs))
        return dict(zip(self.spec.outputs, outputs, strict=True))


class OrtExecutor:
    """An exported segment run by ONNX Runtime (CPU unless providers say otherwise)."""

    def __init__(self, path: Path, spec: SegmentSpec, providers: Sequence[str] = ("CPUExecutionProvider",)):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                "onnxruntime is not installed: pip install 'earlytom[onnx]'"
            ) from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT warns about every fp16 node it runs via fp32
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self.spec = spec
        # Float inputs are cast to the graph's type, so an fp32 reference can feed an fp16 graph.
        self.float_types = {
            i.name: np.float16 if i.type == "tensor(float16)" else np.float32
            for i in self.session.get_inputs()
            if "float" in i.type
        }

    def __call__(self, inputs: Tensors) -> Tensors:
        feed = {name: inputs[name].detach().cpu().numpy() for name in self.spec.inputs}
        feed = {name: value.astype(self.float_types.get(name, value.dtype)) for name, value in feed.items()}
        outputs = self.session.run(list(self.spec.outputs), feed)
        return {
            name: torch.from_numpy(np.asarray(value))
            for name, value in zip(self.spec.outputs, outputs, strict=True)
        }


def run_chain(
    executors: Sequence[Executor],
    specs: Sequence[SegmentSpec],
    pixel_values: torch.Tensor,
    planner: MergePlanner,
    *,
    tokens_per_frame: int,
    record: bool = False,
) -> ChainRun:
    """pixel_values (T, 3, H, W) through every segment; merges after each encoder segment."""
    records: list[SegmentRecord] = []
    hidden, scores = pixel_values, None
    frames = [pixel_values.shape[0]]
    for executor, spec in zip(executors[:-1], specs[:-1], strict=True):
        inputs = {spec.inputs[0]: hidden}
        outputs = executor(inputs)
        if record:
            records.append(SegmentRecord(spec.name, inputs, outputs))
        merged = planner.merge(outputs["hidden_out"], outputs.get("scores"))
        hidden, scores = merged.hidden, merged.scores
        frames.append(hidden.shape[0])
    if scores is None:
        raise ValueError(
            "no segment produced scores: the last encoder segment must end at the last prune layer"
        )
    selection = planner.selection_inputs(hidden, base_frames=frames[0], tokens_per_frame=tokens_per_frame)
    inputs = {
        "hidden": hidden,
        "scores": scores,
        "frame_kind": selection.frame_kind,
        "budget": selection.budget,
        "token_slots": selection.token_slots,
    }
    outputs = executors[-1](inputs)
    if record:
        records.append(SegmentRecord(specs[-1].name, inputs, outputs))
    return ChainRun(outputs["video_tokens"], outputs["token_index"], tuple(frames), selection, records)

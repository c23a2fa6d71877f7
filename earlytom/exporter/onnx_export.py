"""Trace each segment module to ONNX with the dynamo exporter (dynamic frame dimension)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from earlytom.models.segments import EncoderSegment, FinalSegment, SegmentSpec
from earlytom.models.vision import VisionSide

# A shape-only example: the exporter traces with fake tensors, so the values never matter, and
# 2 frames avoids torch.export's specialisation of sizes 0 and 1.
EXAMPLE_FRAMES = 2


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # "float16", "float32", "int64"
    shape: tuple[int | str, ...]  # "frames" / "tokens" for dynamic dimensions

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class SegmentFile:
    spec: SegmentSpec
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    sha256: str

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "file": str(self.path.relative_to(root)),
            "layers": [self.spec.first_layer, self.spec.stop_layer - 1]
            if self.spec.stop_layer > self.spec.first_layer
            else [],
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "sha256": self.sha256,
        }


def example_inputs(vision: VisionSide, spec: SegmentSpec, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    frames, tokens = EXAMPLE_FRAMES, vision.tokens_per_frame
    width = vision.hidden_size  # D
    size = vision.image_size
    table = {
        "pixel_values": torch.zeros(frames, 3, size, size, dtype=dtype),
        "hidden": torch.zeros(frames, tokens, width, dtype=dtype),
        "scores": torch.full((frames, tokens), 1.0 / tokens),
        "frame_kind": torch.zeros(frames, dtype=torch.int64),
        "budget": torch.tensor([1, 1]),
        # A length unlike the frame count, so that the exporter keeps the two dimensions apart.
        "token_slots": torch.arange(frames + 1),
    }
    return {name: table[name] for name in spec.inputs}


def export_segment(
    module: EncoderSegment | FinalSegment,
    vision: VisionSide,
    path: Path,
    dtype: torch.dtype,
    opset: int,
    *,
    inline_token_select: bool = False,
) -> SegmentFile:
    """Export one segment module to `path`: a dynamic frame axis, and `selected` on token_slots.

    `inline_token_select` replaces the TokenSelect node by its function body (standard ops only).
    """
    from earlytom.ops.onnx_function import (
        attach_token_select_function,
        inline_token_select_function,
        token_select_translation,
    )

    spec = module.spec
    inputs = example_inputs(vision, spec, dtype)
    frames = torch.export.Dim("frames", min=1, max=4096)
    selected = torch.export.Dim("selected", min=1, max=4096 * 729)
    dynamic = {
        name: ({0: selected} if name == "token_slots" else {0: frames} if name != "budget" else None)
        for name, tensor in inputs.items()
    }
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
        warnings.simplefilter("ignore")  # tracer chatter (deprecations inside torch/transformers)
        program = torch.onnx.export(
            module,
            tuple(inputs.values()),
            input_names=list(spec.inputs),
            output_names=list(spec.outputs),
            dynamic_shapes=tuple(dynamic.values()),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            custom_translation_table={torch.ops.earlytom.token_select.default: token_select_translation()},
            optimize=True,
            verbose=False,
        )
    assert program is not None
    model = attach_token_select_function(program.model_proto)
    if inline_token_select:
        model = inline_token_select_function(model)
    _rename_dims(model)
    _save_atomic(model, path)
    return SegmentFile(spec, path, *_io_info(model), sha256=file_sha256(path))


def _rename_dims(model: Any) -> None:
    """Name the symbolic dimensions: `frames` on inputs, `selected` (+1 with the newline) on outputs."""
    names = {"video_tokens": "selected+1", "token_index": "selected", "token_slots": "selected"}
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = names.get(value.name, "frames")


def _io_info(model: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    from onnx import helper

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        return TensorInfo(value.name, dtype, shape)

    return tuple(info(v) for v in model.graph.input), tuple(info(v) for v in model.graph.output)


def _save_atomic(model: Any, path: Path) -> None:
    import onnx

    tmp = path.with_name(path.name + ".partial")
    onnx.save(model, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs optional-registry misses (torchvision) and prints its steps; keep stdout ours."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

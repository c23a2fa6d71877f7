"""Trace each segment module to ONNX with the dynamo exporter (dynamic frame dimension)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from earlytom.artifact import SegmentEntry, TensorEntry, file_sha256
from earlytom.models.segments import ACTIVATION, FRAMES, SELECTED, SegmentSpec, StageModule, TensorSpec
from earlytom.models.vision import VisionSide

# A shape-only example: the exporter traces with fake tensors, so the values never matter, and
# 2 frames avoids torch.export's specialisation of sizes 0 and 1.
EXAMPLE_FRAMES = 2
MAX_FRAMES = 4096


@dataclass(frozen=True)
class SegmentFile:
    spec: SegmentSpec
    path: Path
    inputs: tuple[TensorEntry, ...]
    outputs: tuple[TensorEntry, ...]
    sha256: str

    def entry(self, root: Path) -> SegmentEntry:
        return SegmentEntry(
            name=self.spec.name,
            kind=self.spec.kind,
            file=str(self.path.relative_to(root)),
            layers=self.spec.layers or (),
            inputs=self.inputs,
            outputs=self.outputs,
            sha256=self.sha256,
        )


def example_input(vision: VisionSide, tensor: TensorSpec, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of the declared rank and type; frame axis EXAMPLE_FRAMES, N unlike the frame count."""
    frames, tokens, size = EXAMPLE_FRAMES, vision.tokens_per_frame, vision.image_size
    float_type = dtype if tensor.dtype == ACTIVATION else torch.float32
    shapes = {
        "pixel_values": (frames, 3, size, size),
        "hidden": (frames, tokens, vision.hidden_size),
        "features": (frames, tokens, int(vision.image_newline.shape[0])),
        "scores": (frames, tokens),
    }
    if tensor.name in shapes:
        return torch.full(shapes[tensor.name], 1.0 / tokens, dtype=float_type)
    table = {
        "frame_kind": torch.zeros(frames, dtype=torch.int64),
        "budget": torch.tensor([1, 1]),
        # A length unlike the frame count, so that the exporter keeps the two dimensions apart.
        "token_slots": torch.arange(frames + 1),
    }
    return table[tensor.name]


def export_segment(
    module: StageModule,
    vision: VisionSide,
    path: Path,
    dtype: torch.dtype,
    opset: int,
    *,
    inline_token_select: bool = False,
) -> SegmentFile:
    """Export one stage module to `path` with the dynamic axes its spec declares.

    `inline_token_select` replaces the TokenSelect node by its function body (standard ops only).
    """
    from earlytom.ops.onnx_function import (
        attach_token_select_function,
        inline_token_select_function,
        token_select_translation,
    )

    spec = module.spec
    inputs = tuple(example_input(vision, tensor, dtype) for tensor in spec.inputs)
    axes = {
        FRAMES: torch.export.Dim("frames", min=1, max=MAX_FRAMES),
        SELECTED: torch.export.Dim("selected", min=1, max=MAX_FRAMES * vision.tokens_per_frame),
    }
    dynamic = tuple({0: axes[t.axis]} if t.axis else None for t in spec.inputs)
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
        warnings.simplefilter("ignore")  # tracer chatter (deprecations inside torch/transformers)
        program = torch.onnx.export(
            module,
            inputs,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            custom_translation_table={torch.ops.earlytom.token_select.default: token_select_translation()},
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError(f"torch.onnx.export returned no program for {spec.name}")
    model = attach_token_select_function(program.model_proto)
    if inline_token_select:
        model = inline_token_select_function(model)
    _rename_dims(model, spec)
    _save_atomic(model, path)
    return SegmentFile(spec, path, *_io_info(model), sha256=file_sha256(path))


def _rename_dims(model: Any, spec: SegmentSpec) -> None:
    """Name the symbolic dimensions after the declared axes (`selected+1` with the newline row)."""
    axes = {t.name: t.axis for t in (*spec.inputs, *spec.outputs)}
    for value in [*model.graph.input, *model.graph.output]:
        axis = axes.get(value.name) or FRAMES
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = "selected+1" if value.name == "video_tokens" else axis


def _io_info(model: Any) -> tuple[tuple[TensorEntry, ...], tuple[TensorEntry, ...]]:
    from onnx import helper

    def info(value: Any) -> TensorEntry:
        tensor = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        return TensorEntry(value.name, dtype, shape)

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

"""Qwen2.5-VL's vision path cut into stages, as `earlytom.models.segments` cuts LLaVA's.

Same cuts (after each prune layer; the last one scores received attention), same planner between
them, same select stage; what differs is what a stage reads: temporal patches (T, S, 1176) instead
of images, and the per-video rotary tables and window mask (`FrameGeometry`) beside the frames,
declared here as stage inputs so the chain loop hands them to every stage that runs layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from earlytom.config import EarlyTomConfig
from earlytom.models.qwen_vl.vision import FrameGeometry, QwenFrameLayer, QwenVisionSide
from earlytom.models.segments import (
    ACTIVATION,
    FRAMES,
    HIDDEN,
    SegmentSpec,
    SelectSegment,
    TensorSpec,
    plan_segments,
)

PATCHES = TensorSpec("pixel_values", ACTIVATION, 3, FRAMES)  # (T, S, 3·2·14·14) temporal patches
ROTARY_COS = TensorSpec("rotary_cos", "float32", 2, None)  # (S, hd) for this video's patch grid
ROTARY_SIN = TensorSpec("rotary_sin", "float32", 2, None)  # (S, hd)
WINDOW_MASK = TensorSpec("window_mask", "bool", 2, None)  # (S, S) True: may attend (window layers)
GEOMETRY = (ROTARY_COS, ROTARY_SIN, WINDOW_MASK)


def side_tensors(geometry: FrameGeometry) -> dict[str, torch.Tensor]:
    """The per-video stage inputs of a patch grid, by their declared names."""
    return {
        ROTARY_COS.name: geometry.cos,
        ROTARY_SIN.name: geometry.sin,
        WINDOW_MASK.name: geometry.window_mask,
    }


def plan_qwen_segments(
    config: EarlyTomConfig, num_layers: int, method: str = "earlytom"
) -> tuple[SegmentSpec, ...]:
    """LLaVA's cuts (`plan_segments`), with patches for images and the geometry beside every layer stage."""
    specs = []
    for spec in plan_segments(config, num_layers, method):
        if spec.kind == "select":
            specs.append(spec)
            continue
        first = PATCHES if spec.inputs[0].name == "pixel_values" else HIDDEN
        specs.append(SegmentSpec(spec.name, spec.kind, spec.first_layer, spec.stop_layer,
                                 (first, *GEOMETRY), spec.outputs))  # fmt: skip
    return tuple(specs)


class QwenEncoderSegment(nn.Module):
    """patches (T, S, 1176) or hidden (T, S, D), geometry -> hidden (T, S, D) [, scores (T, S) fp32]."""

    embed: Callable[[torch.Tensor], torch.Tensor] | None

    def __init__(self, vision: QwenVisionSide, spec: SegmentSpec, *, attention_chunk: int | None = 8) -> None:
        super().__init__()
        self.spec = spec
        self.embed = vision.embed if spec.inputs[0] is PATCHES else None  # only the first stage embeds
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        self.attention_chunk = attention_chunk

    def forward(
        self, inputs: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, window_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        hidden = self.embed(inputs) if self.embed is not None else inputs  # (T, S, D)
        scores = None
        layers: list[QwenFrameLayer] = list(self.layers)  # type: ignore[arg-type]
        for i, layer in enumerate(layers):
            if self.spec.scores_out and i == len(layers) - 1:
                hidden, scores = layer.with_received_attention(
                    hidden, cos, sin, window_mask, frames_per_chunk=self.attention_chunk
                )
            else:
                hidden = layer(hidden, cos, sin, window_mask)
        return (hidden,) if scores is None else (hidden, scores)


class QwenHeadSegment(nn.Module):
    """hidden (T', S, D), geometry -> features (T', Q, C): the layers after the last cut, then the merger."""

    def __init__(self, vision: QwenVisionSide, spec: SegmentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        self.merger = vision.merger  # a submodule, so the stage owns what it runs
        self.merge = vision.merge

    def forward(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, window_mask: torch.Tensor
    ) -> tuple[torch.Tensor]:
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, window_mask)  # (T, S, D)
        return (self.merge(hidden),)  # (T, Q, C)


def build_qwen_stages(
    vision: QwenVisionSide,
    config: EarlyTomConfig,
    *,
    method: str = "earlytom",
    attention_chunk: int | None = 8,
) -> list[Any]:
    """One module per stage of `plan_qwen_segments`, sharing the vision side's weights."""
    modules: list[Any] = []
    for spec in plan_qwen_segments(config, vision.num_layers, method):
        if spec.kind == "encoder":
            modules.append(QwenEncoderSegment(vision, spec, attention_chunk=attention_chunk))
        elif spec.kind == "head":
            modules.append(QwenHeadSegment(vision, spec))
        else:
            modules.append(SelectSegment(vision, spec, exact=config.budget == "exact"))
    return modules

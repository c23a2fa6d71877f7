"""The compressing encoder cut at its merge points (DESIGN §4): one nn.Module per segment.

The torch backend runs these modules eagerly and the exporter traces the very same modules to
ONNX, so every backend executes one definition. Between segments the merge planner
(`earlytom.compression.planner`) runs, whatever executed the segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import earlytom.ops  # noqa: F401  registers torch.ops.earlytom.token_select
from earlytom.config import EarlyTomConfig
from earlytom.models.attention import layer_with_received_attention
from earlytom.models.vision import VisionSide, pool_grid

SELECT_INPUTS = ("hidden", "scores", "frame_kind", "budget", "token_slots")
FINAL_OUTPUTS = ("video_tokens", "token_index")


@dataclass(frozen=True)
class SegmentSpec:
    """Which encoder layers a segment runs, and its named inputs and outputs.

    Encoder segments read `pixel_values` or `hidden` and write `hidden_out` (ONNX forbids an input
    and an output of one name) and, at the last prune layer, `scores`.
    """

    name: str
    first_layer: int
    stop_layer: int  # exclusive
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def is_final(self) -> bool:
        return self.outputs == FINAL_OUTPUTS

    @property
    def scores_out(self) -> bool:
        return "scores" in self.outputs


def plan_segments(config: EarlyTomConfig, num_layers: int) -> tuple[SegmentSpec, ...]:
    """Segments for a compression setting: cut after each prune layer, then the final segment.

    With compression off there is one encoder segment of all layers and a final segment with
    none (it only projects and pools).
    """
    cuts = list(config.prune_layers) if config.enabled else [num_layers - 1]
    specs, first = [], 0
    for i, layer in enumerate(cuts):
        scoring = config.enabled and i == len(cuts) - 1
        specs.append(
            SegmentSpec(
                name=f"segment{i}",
                first_layer=first,
                stop_layer=layer + 1,
                inputs=("pixel_values",) if i == 0 else ("hidden",),
                outputs=("hidden_out", "scores") if scoring else ("hidden_out",),
            )
        )
        first = layer + 1
    specs.append(SegmentSpec("final", first, num_layers, SELECT_INPUTS, FINAL_OUTPUTS))
    return tuple(specs)


def run_layers(
    layers: nn.ModuleList, hidden: torch.Tensor, *, scoring: bool, attention_chunk: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """hidden (T, S, D) through `layers`; the last one reads received attention when `scoring`."""
    scores = None
    for i, layer in enumerate(layers):
        if scoring and i == len(layers) - 1:
            hidden, scores = layer_with_received_attention(layer, hidden, frames_per_chunk=attention_chunk)
        else:
            hidden = layer(hidden, None)
    return hidden, scores


class EncoderSegment(nn.Module):
    """pixel_values (T, 3, H, W) or hidden (T, S, D) -> hidden (T, S, D) [, scores (T, S) fp32]."""

    spec: SegmentSpec

    def __init__(self, vision: VisionSide, spec: SegmentSpec, *, attention_chunk: int | None = 8) -> None:
        super().__init__()
        self.spec = spec
        self.embeddings = vision.embeddings if spec.inputs == ("pixel_values",) else None
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        # Chunking bounds eager memory; an exported graph has a symbolic frame count, so no chunks.
        self.attention_chunk = attention_chunk

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.embeddings(inputs) if self.embeddings is not None else inputs  # (T, S, D)
        hidden, scores = run_layers(
            self.layers, hidden, scoring=self.spec.scores_out, attention_chunk=self.attention_chunk
        )
        return (hidden,) if scores is None else (hidden, scores)


class FinalSegment(nn.Module):
    """Remaining layers, projector, bilinear pooling, TokenSelect and the newline token."""

    spec: SegmentSpec

    def __init__(self, vision: VisionSide, spec: SegmentSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(vision.layers[spec.first_layer : spec.stop_layer])
        self.projector = vision.projector
        self.image_newline = vision.image_newline  # (C,)
        self.grid = vision.grid

    def run_layers(self, hidden: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers, hidden, scoring=False, attention_chunk=None)[0]  # (T, S, D)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return pool_grid(features, self.grid)  # (T, P, C)

    def newline(self, dtype: torch.dtype) -> torch.Tensor:
        return self.image_newline[None].to(dtype)  # (1, C)

    def select(
        self,
        features: torch.Tensor,
        scores: torch.Tensor,
        frame_kind: torch.Tensor,
        budget: torch.Tensor,
        token_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (T, S, C), scores (T, S) -> video_tokens (N + 1, C), token_index (N, 2)."""
        pooled = self.pool(features)  # (T, P, C)
        # Scores get the same pooling, in fp32: (T, S) -> (T, S, 1) -> (T, P, 1) -> (T, P).
        pooled_scores = self.pool(scores.float()[..., None]).squeeze(-1)
        tokens, index = torch.ops.earlytom.token_select(
            pooled, pooled_scores, frame_kind, budget, token_slots
        )
        return torch.cat([tokens, self.newline(tokens.dtype)]), index

    def forward(
        self,
        hidden: torch.Tensor,
        scores: torch.Tensor,
        frame_kind: torch.Tensor,
        budget: torch.Tensor,
        token_slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.projector(self.run_layers(hidden))  # (T, S, C)
        return self.select(features, scores, frame_kind, budget, token_slots)


def build_segments(
    vision: VisionSide, config: EarlyTomConfig, *, attention_chunk: int | None = 8
) -> tuple[list[EncoderSegment], FinalSegment]:
    specs = plan_segments(config, vision.num_layers)
    encoders = [EncoderSegment(vision, spec, attention_chunk=attention_chunk) for spec in specs[:-1]]
    return encoders, FinalSegment(vision, specs[-1])

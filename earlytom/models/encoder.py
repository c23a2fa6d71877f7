"""The compressing vision encoder: HF SigLIP layers in order, frames merged at the prune layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from earlytom.compression import Segment, merge_frames, segment_frames
from earlytom.config import EarlyTomConfig
from earlytom.models.attention import layer_with_received_attention


@dataclass(frozen=True)
class EncoderOutput:
    hidden: torch.Tensor  # (T', S, D) output of the feature layer, no post-layernorm
    scores: torch.Tensor | None  # (T', S) fp32 received attention of the last prune layer, merged
    groups: list[Segment]  # final segmentation of the T' frames (drives Stage II)
    frames_per_stage: tuple[int, ...]  # input frames, then frames after each prune layer


def feature_layer_count(num_layers: int, vision_feature_layer: int) -> int:
    """How many encoder layers produce HF's `hidden_states[vision_feature_layer]` (index 0 = embeddings)."""
    index = vision_feature_layer if vision_feature_layer >= 0 else num_layers + 1 + vision_feature_layer
    if not 0 < index <= num_layers:
        raise ValueError(f"vision_feature_layer={vision_feature_layer} does not exist in {num_layers} layers")
    return index


class CompressingVisionEncoder(nn.Module):
    """Runs a SiglipVisionModel's embeddings and layers and merges frames after each prune layer.

    With compression disabled it computes exactly what LLaVA-OneVision feeds its projector:
    `hidden_states[vision_feature_layer]` of the stock tower.
    """

    def __init__(self, vision_tower: Any, config: EarlyTomConfig, *, vision_feature_layer: int = -1) -> None:
        super().__init__()
        self.embeddings: Any = vision_tower.embeddings  # SiglipVisionEmbeddings
        self.layers: Any = vision_tower.encoder.layers  # ModuleList of SiglipEncoderLayer
        self.num_layers = feature_layer_count(len(self.layers), vision_feature_layer)
        self.config = config

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        config = self.config
        hidden = self.embeddings(pixel_values)  # (T, S, D)
        frames = [hidden.shape[0]]
        prune_layers = set(config.prune_layers) if config.enabled else set()
        scoring_layer = config.prune_layers[-1] if config.enabled else None
        scores: torch.Tensor | None = None
        groups: list[Segment] = [(0, hidden.shape[0] - 1)]
        for index in range(self.num_layers):
            layer = self.layers[index]
            if index == scoring_layer:
                hidden, scores = layer_with_received_attention(layer, hidden)
            else:
                hidden = layer(hidden, None)
            if index in prune_layers:
                merged = merge_frames(
                    hidden,
                    scores,
                    tau=config.tau,
                    ema=config.ema,
                    max_window=config.max_window,
                    drop_last_middle=config.drop_last_middle,
                )
                hidden, scores = merged.hidden, merged.scores
                frames.append(hidden.shape[0])
                if index == scoring_layer:
                    groups = segment_frames(
                        hidden, tau=config.tau, ema=config.ema, max_window=config.max_window
                    )
        return EncoderOutput(hidden=hidden, scores=scores, groups=groups, frames_per_stage=tuple(frames))

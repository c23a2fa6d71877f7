"""The compressing vision encoder (torch): encoder segments, with the merge planner between them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from earlytom.compression import MergePlanner, Segment, SelectionInputs
from earlytom.config import EarlyTomConfig
from earlytom.models.segments import build_segments
from earlytom.models.vision import VisionSide


@dataclass(frozen=True)
class EncoderOutput:
    hidden: torch.Tensor  # (T', S, D) output of the feature layer, no post-layernorm
    scores: torch.Tensor | None  # (T', S) fp32 received attention of the last prune layer, merged
    selection: SelectionInputs | None  # inputs of TokenSelect; None with compression off
    frames_per_stage: tuple[int, ...]  # input frames, then frames after each prune layer

    @property
    def groups(self) -> list[Segment]:
        """Final segmentation of the T' frames (one group of all frames with compression off)."""
        return self.selection.groups if self.selection else [(0, self.hidden.shape[0] - 1)]


def planner_for(config: EarlyTomConfig) -> MergePlanner:
    return MergePlanner(
        tau=config.tau,
        ema=config.ema,
        max_window=config.max_window,
        drop_last_middle=config.drop_last_middle,
        retention=config.retention,
    )


class CompressingVisionEncoder(nn.Module):
    """SigLIP embeddings and layers, frames merged after each prune layer.

    With compression disabled it computes exactly what LLaVA-OneVision feeds its projector:
    `hidden_states[vision_feature_layer]` of the stock tower.
    """

    def __init__(
        self, vision: VisionSide, config: EarlyTomConfig, *, attention_chunk: int | None = 8
    ) -> None:
        super().__init__()
        self.vision = vision
        self.config = config
        self.num_layers = vision.num_layers
        encoders, final = build_segments(vision, config, attention_chunk=attention_chunk)
        self.segments = nn.ModuleList(encoders)
        self.encoder_segments = encoders  # the same modules, typed
        self.final = final
        self.planner = planner_for(config)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> EncoderOutput:
        hidden, scores = pixel_values, None
        frames = [pixel_values.shape[0]]
        for segment in self.encoder_segments:
            outputs = segment(hidden)
            hidden = outputs[0]  # (T, S, D)
            if not self.config.enabled:
                continue
            merged = self.planner.merge(hidden, outputs[1] if segment.spec.scores_out else None)
            hidden, scores = merged.hidden, merged.scores
            frames.append(hidden.shape[0])
        selection = None
        if self.config.enabled:
            selection = self.planner.selection_inputs(
                hidden, base_frames=frames[0], tokens_per_frame=self.vision.pooled_tokens_per_frame
            )
        hidden = self.final.run_layers(hidden)
        return EncoderOutput(hidden, scores, selection, tuple(frames))

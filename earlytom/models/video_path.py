"""LLaVA-OneVision's video path with EarlyTom: encoder, projector, pooling, selection, newline.

Split in two steps so callers can time them apart: `encode` (vision encoding: SigLIP layers,
merges, projector) and `tokens` (token processing: bilinear pooling, Stage II, newline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from earlytom.compression import SelectionInputs
from earlytom.config import EarlyTomConfig
from earlytom.models.encoder import CompressingVisionEncoder
from earlytom.models.vision import VisionSide


@dataclass(frozen=True)
class EncodedVideo:
    features: torch.Tensor  # (T', S, C) projected features
    scores: torch.Tensor | None  # (T', S) fp32
    selection: SelectionInputs | None  # None with compression off
    frames_per_stage: tuple[int, ...]


@dataclass(frozen=True)
class VideoTokens:
    embeds: torch.Tensor  # (N + 1, C): selected visual tokens, then image_newline
    frame_ids: torch.Tensor | None  # (N,) source frame (after Stage I) of each token; None when all are kept
    positions: torch.Tensor | None  # (N,) raster position in the pooled grid
    frames_per_stage: tuple[int, ...]
    tokens_before: int  # what the stock model would feed: B·P + 1


class VideoPath:
    """Composes a LlavaOnevisionModel's tower, projector, pooling and newline with EarlyTom."""

    def __init__(self, llava: Any, config: EarlyTomConfig) -> None:
        self.vision = VisionSide.from_llava(llava)  # llava: the `.model` of the generation class
        self.config = config
        self.encoder = CompressingVisionEncoder(self.vision, config)
        self.final = self.encoder.final  # projector, pooling, TokenSelect, newline

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> EncodedVideo:
        """pixel_values (T, 3, H, W) -> projected features of the frames left after Stage I."""
        out = self.encoder(pixel_values)
        features = self.final.projector(out.hidden)  # (T', S, C)
        return EncodedVideo(features, out.scores, out.selection, out.frames_per_stage)

    @torch.no_grad()
    def tokens(self, encoded: EncodedVideo) -> VideoTokens:
        final = self.final
        base_frames = encoded.frames_per_stage[0]
        tokens_before = base_frames * self.vision.pooled_tokens_per_frame + 1
        if encoded.selection is None or encoded.scores is None:  # compression off: every token, as stock
            pooled = final.pool(encoded.features)  # (T', P, C)
            embeds = torch.cat([pooled.flatten(0, 1), final.newline(pooled.dtype)])
            return VideoTokens(embeds, None, None, encoded.frames_per_stage, tokens_before)
        selection = encoded.selection
        embeds, index = final.select(
            encoded.features, encoded.scores, selection.frame_kind, selection.budget, selection.token_slots
        )
        return VideoTokens(embeds, index[:, 0], index[:, 1], encoded.frames_per_stage, tokens_before)


def embed_prompt(
    model: Any, input_ids: torch.Tensor, video: torch.Tensor, *, video_token_id: int
) -> torch.Tensor:
    """inputs_embeds (1, L, C) with the video tokens (N+1, C) scattered onto the placeholders."""
    embeds = model.get_input_embeddings()(input_ids)  # (1, L, C)
    mask = input_ids == video_token_id  # (1, L)
    if int(mask.sum()) != video.shape[0]:
        raise ValueError(f"{int(mask.sum())} video placeholders for {video.shape[0]} video tokens")
    return embeds.masked_scatter(mask[..., None], video.to(embeds.dtype))

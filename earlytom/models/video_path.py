"""LLaVA-OneVision's video path with EarlyTom: encoder, projector, pooling, selection, newline.

Split in two steps so callers can time them apart: `encode` (vision encoding: SigLIP layers,
merges, projector) and `tokens` (token processing: bilinear pooling, Stage II, newline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from earlytom.compression import Segment, select_tokens
from earlytom.config import EarlyTomConfig
from earlytom.errors import ModelError
from earlytom.models.encoder import CompressingVisionEncoder


@dataclass(frozen=True)
class EncodedVideo:
    features: torch.Tensor  # (T', S, C) projected features
    scores: torch.Tensor | None  # (T', S) fp32
    groups: list[Segment]
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
        self.llava = llava  # LlavaOnevisionModel (the `.model` of the generation class)
        self.config = config
        hf_config = llava.config
        if not isinstance(hf_config.vision_feature_layer, int):
            raise ModelError("models that concatenate several vision feature layers are not supported")
        if hf_config.vision_feature_select_strategy != "full":
            # LLaVA-OneVision's SigLIP has no CLS token: every checkpoint uses all 729 tokens.
            raise ModelError(
                f"vision_feature_select_strategy={hf_config.vision_feature_select_strategy!r} is not "
                "supported: EarlyTom needs the full 27×27 token grid ('full')"
            )
        self.encoder = CompressingVisionEncoder(
            llava.vision_tower, config, vision_feature_layer=hf_config.vision_feature_layer
        )

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> EncodedVideo:
        """pixel_values (T, 3, H, W) -> projected features of the frames left after Stage I."""
        out = self.encoder(pixel_values)
        features = self.llava.multi_modal_projector(out.hidden)  # (T', S, C)
        return EncodedVideo(features, out.scores, out.groups, out.frames_per_stage)

    @torch.no_grad()
    def tokens(self, encoded: EncodedVideo) -> VideoTokens:
        pooled = self.llava.apply_pooling(encoded.features)  # (T', P, C) bilinear 27×27 -> 14×14
        base_frames = encoded.frames_per_stage[0]
        tokens_before = base_frames * pooled.shape[1] + 1
        newline = self.llava.image_newline[None].to(pooled.dtype)  # (1, C)
        if encoded.scores is None:  # compression off: every token, as the stock model
            return VideoTokens(
                torch.cat([pooled.flatten(0, 1), newline]),
                None,
                None,
                encoded.frames_per_stage,
                tokens_before,
            )
        # The same pooling as the features: scores are (T', S) -> (T', S, 1) -> (T', P, 1).
        pooled_scores = self.llava.apply_pooling(encoded.scores[..., None]).squeeze(-1)  # (T', P)
        selection = select_tokens(
            pooled, pooled_scores, encoded.groups, retention=self.config.retention, base_frames=base_frames
        )
        embeds = torch.cat([selection.tokens, newline])  # (N + 1, C)
        return VideoTokens(
            embeds, selection.frame_ids, selection.positions, encoded.frames_per_stage, tokens_before
        )


def embed_prompt(
    model: Any, input_ids: torch.Tensor, video: torch.Tensor, *, video_token_id: int
) -> torch.Tensor:
    """inputs_embeds (1, L, C) with the video tokens (N+1, C) scattered onto the placeholders."""
    embeds = model.get_input_embeddings()(input_ids)  # (1, L, C)
    mask = input_ids == video_token_id  # (1, L)
    if int(mask.sum()) != video.shape[0]:
        raise ValueError(f"{int(mask.sum())} video placeholders for {video.shape[0]} video tokens")
    return embeds.masked_scatter(mask[..., None], video.to(embeds.dtype))

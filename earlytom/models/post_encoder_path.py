"""The post-encoder baseline (VisionZip-style): compress only after the stock vision encoder.

Every frame runs every encoder layer (no frame merging); the last layer also reads the attention
each token receives (mean over heads and query rows, fp32, as EarlyTom's scoring layer). After the
projector and HF's bilinear pooling, each frame keeps its top-k pooled tokens by pooled score,
k = ceil(P·r), in raster order; ties go to the lower index. It is VisionZip's "dominant token"
step alone (no contextual-token merge), kept that simple so that the comparison with EarlyTom
isolates one thing: where the tokens are dropped. The language-model side (Stage III included)
is the same as EarlyTom's.
"""

from __future__ import annotations

from typing import Any

import torch

from earlytom.compression import DYNAMIC, SelectionInputs, token_budget
from earlytom.config import EarlyTomConfig
from earlytom.models.segments import FINAL_OUTPUTS, SELECT_INPUTS, FinalSegment, SegmentSpec, run_layers
from earlytom.models.video_path import EncodedVideo, VideoPath
from earlytom.models.vision import VisionSide


def post_encoder_selection(num_frames: int, tokens_per_frame: int, retention: float,
                           device: torch.device) -> SelectionInputs:  # fmt: skip
    """Every frame dynamic with k = ceil(P·r) tokens: the TokenSelect inputs of plain per-frame top-k."""
    budget = token_budget(tokens_per_frame, num_frames, retention=retention, base_frames=num_frames)
    return SelectionInputs(
        groups=[(t, t) for t in range(num_frames)],
        frame_kind=torch.full((num_frames,), DYNAMIC, dtype=torch.int64, device=device),
        budget=torch.tensor([budget.dynamic, budget.static], dtype=torch.int64, device=device),
        token_slots=torch.arange(num_frames * budget.dynamic, dtype=torch.int64, device=device),
    )


class PostEncoderVideoPath(VideoPath):
    """VideoPath whose encode runs the stock encoder and scores its last layer; `tokens` is shared."""

    def __init__(self, llava: Any, config: EarlyTomConfig, *, attention_chunk: int | None = 8) -> None:
        # VideoPath.__init__ is not called: it builds the compressing encoder, which this path lacks.
        if not config.enabled:
            raise ValueError("the post-encoder baseline compresses: pass an enabled config (retention)")
        self.vision = VisionSide.from_llava(llava)
        self.config = config
        self.layers = self.vision.layers[: self.vision.num_layers]
        self.attention_chunk = attention_chunk
        no_layers = SegmentSpec("final", self.vision.num_layers, self.vision.num_layers, SELECT_INPUTS,
                                FINAL_OUTPUTS)  # fmt: skip
        self.final = FinalSegment(self.vision, no_layers)  # projector, pooling, TokenSelect, newline

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> EncodedVideo:
        """pixel_values (T, 3, H, W) -> projected features of all T frames, last-layer scores."""
        hidden = self.vision.embeddings(pixel_values)  # (T, S, D)
        hidden, scores = run_layers(self.layers, hidden, scoring=True, attention_chunk=self.attention_chunk)
        features = self.final.projector(hidden)  # (T, S, C)
        frames = features.shape[0]
        selection = post_encoder_selection(
            frames, self.vision.pooled_tokens_per_frame, self.config.retention, features.device
        )
        return EncodedVideo(features, scores, selection, (frames,))

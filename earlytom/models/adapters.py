"""Family adapters: what the pipeline asks a model family between decoded frames and the LLM.

An adapter answers, for one family: how frames are sampled (`rounding`), which vision side a loaded
model has, how decoded frames become the vision path's inputs (pixels plus any per-video stage
inputs), and how the prompt is built around the kept visual tokens (ids, and positions when the
LLM does not use 0..L-1). The LLaVA families share one adapter; Qwen2.5-VL has its own
(`earlytom.models.qwen_vl.adapter`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from earlytom.config import EarlyTomConfig
from earlytom.models.families import ModelFamily
from earlytom.models.video import DecodedVideo


@dataclass(frozen=True)
class VisionInputs:
    """What the vision path reads for one video."""

    pixels: torch.Tensor  # LLaVA (T, 3, 384, 384); Qwen2.5-VL (T', S, 1176) temporal patches
    side: dict[str, torch.Tensor] = field(default_factory=dict)  # per-video stage inputs
    grid: tuple[int, int] | None = None  # Qwen2.5-VL: the LLM token grid (rows, cols) per frame
    time_interval: float = 1.0  # Qwen2.5-VL: M-RoPE temporal step between temporal patches
    tokens_per_frame: int | None = None  # P when it depends on the video (Qwen2.5-VL: rows·cols)


@dataclass(frozen=True)
class PromptInputs:
    input_ids: torch.Tensor  # (1, L) on the CPU, one placeholder per visual token
    positions: torch.Tensor | None = None  # (3, L) M-RoPE positions; None: 0..L-1


@dataclass(frozen=True)
class VisualBound:
    """Enough to bound the visual tokens before any frame is encoded (`models.context`)."""

    frames: int  # frames entering the vision path (Qwen2.5-VL: temporal patches)
    tokens_per_frame: int  # P (Qwen2.5-VL: its largest merged grid)
    newline_tokens: int


class FamilyAdapter(Protocol):
    family: ModelFamily
    rounding: str  # frame index rounding (`earlytom.models.video.sample_indices`)

    def vision_side(self, model: Any) -> Any: ...

    def check_config(self, config: EarlyTomConfig, vision: Any) -> None: ...

    def vision_inputs(
        self, video: DecodedVideo, *, device: torch.device, dtype: torch.dtype, vision: Any = None
    ) -> VisionInputs: ...

    def prompt_inputs(
        self, tokenizer: Any, prompt: str, tokens: Any, inputs: VisionInputs, *, video_token_id: int
    ) -> PromptInputs: ...

    def text_tokens(self, tokenizer: Any, prompt: str) -> int: ...

    def visual_bound(self, frames: int, height: int, width: int) -> VisualBound: ...


class LlavaAdapter:
    """LLaVA-OneVision and LLaVA-Video: SigLIP at 384 px, N video placeholders + 1 newline, 1-D positions."""

    rounding = "floor"

    def __init__(self, family: ModelFamily) -> None:
        self.family = family

    def vision_side(self, model: Any) -> Any:
        from earlytom.models.vision import VisionSide

        return VisionSide.from_llava(model.model)

    def check_config(self, config: EarlyTomConfig, vision: Any) -> None:
        """Nothing beyond EarlyTomConfig.check_model: every SigLIP layer may be a prune layer."""

    def vision_inputs(
        self, video: DecodedVideo, *, device: torch.device, dtype: torch.dtype, vision: Any = None
    ) -> VisionInputs:
        from earlytom.models.preprocess import preprocess_frames

        return VisionInputs(preprocess_frames(video.frames, device=device, dtype=dtype))

    def prompt_inputs(
        self, tokenizer: Any, prompt: str, tokens: Any, inputs: VisionInputs, *, video_token_id: int
    ) -> PromptInputs:
        from earlytom.models.prompt import build_input_ids

        count = int(tokens.embeds.shape[0])
        return PromptInputs(
            build_input_ids(tokenizer, prompt, num_video_tokens=count, video_token_id=video_token_id)
        )

    def text_tokens(self, tokenizer: Any, prompt: str) -> int:
        from earlytom.models.prompt import build_input_ids

        return int(build_input_ids(tokenizer, prompt, num_video_tokens=0, video_token_id=0).shape[1])

    def visual_bound(self, frames: int, height: int, width: int) -> VisualBound:
        # Bilinear pooling keeps the most tokens (14×14 of 27×27), whatever a checkpoint pools with.
        return VisualBound(frames, 196, 1)


def adapter_for(family: ModelFamily) -> FamilyAdapter:
    """The adapter of `family` (its `adapter` field names it)."""
    if family.adapter == "qwen-vl":
        from earlytom.models.qwen_vl.adapter import QwenVLAdapter

        return QwenVLAdapter(family)
    return LlavaAdapter(family)

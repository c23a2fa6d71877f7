"""The Qwen2.5-VL family adapter: temporal patches in, M-RoPE positions for the kept tokens out.

Frames are sampled as qwen-vl-utils samples them (nearest-index rounding), resized and patchified
as its processor does (`preprocess.py`), encoded as temporal patches of 2 frames with the
per-video rotary tables and window mask beside them, and prompted with Qwen2.5-VL's chat template:
`<|vision_start|>`, one `<|video_pad|>` per kept token, `<|vision_end|>`. Each kept token keeps its
3-D position: the time of the temporal patch its frame starts from (Stage I merges keep the first
frame's time) and its row and column in the merged grid; text after the video continues from the
largest position + 1, as Qwen2.5-VL's own `get_rope_index` places it.
"""

from __future__ import annotations

from typing import Any

import torch

from earlytom.config import EarlyTomConfig
from earlytom.errors import ConfigError, ModelError
from earlytom.models.adapters import PromptInputs, VisionInputs, VisualBound
from earlytom.models.families import ModelFamily
from earlytom.models.qwen_vl.architecture import QWEN_MAX_PIXELS
from earlytom.models.video import DecodedVideo

VIDEO_PAD = "<|video_pad|>"
# Without a recorded frame rate (a frames file of a stream without one) Qwen's processor assumes 2 fps.
DEFAULT_FPS = 2.0


class QwenVLAdapter:
    rounding = "round"

    def __init__(self, family: ModelFamily, *, max_pixels: int = QWEN_MAX_PIXELS) -> None:
        self.family = family
        self.max_pixels = max_pixels

    def vision_side(self, model: Any) -> Any:
        from earlytom.models.qwen_vl.vision import QwenVisionSide

        return QwenVisionSide.from_qwen(model.model)

    def check_config(self, config: EarlyTomConfig, vision: Any) -> None:
        """The last prune layer scores received attention over whole frames: a full-attention block."""
        if not config.enabled:
            return
        full = vision.full_attention_layers
        if config.prune_layers[-1] not in full:
            raise ConfigError(
                f"prune_layers={list(config.prune_layers)} ends at layer {config.prune_layers[-1]}, a "
                f"window-attention block of Qwen2.5-VL: the last prune layer scores received attention "
                f"over the whole frame, so it must be a full-attention block ({', '.join(map(str, full))})"
            )

    def vision_inputs(
        self, video: DecodedVideo, *, device: torch.device, dtype: torch.dtype, vision: Any = None
    ) -> VisionInputs:
        from earlytom.models.qwen_vl.positions import time_interval
        from earlytom.models.qwen_vl.preprocess import preprocess_video, sampled_fps
        from earlytom.models.qwen_vl.segments import side_tensors

        if vision is None:
            raise ValueError("Qwen2.5-VL's vision inputs need its vision side (rotary tables, windows)")
        count = int(video.frames.shape[0])
        fps = sampled_fps(video.total_frames, count, video.fps) if video.fps else DEFAULT_FPS
        inputs = preprocess_video(
            video.frames, fps=fps, device=device, dtype=dtype, max_pixels=self.max_pixels,
            indices=video.indices,
        )  # fmt: skip
        _, gh, gw = inputs.grid
        _, rows, cols = inputs.merged_grid
        step = time_interval(inputs.second_per_grid, int(vision.vision_config.tokens_per_second))
        side = side_tensors(vision.geometry(gh, gw, device))
        return VisionInputs(inputs.patches, side, (rows, cols), step, rows * cols)

    def prompt_inputs(
        self, tokenizer: Any, prompt: str, tokens: Any, inputs: VisionInputs, *, video_token_id: int
    ) -> PromptInputs:
        from earlytom.models.qwen_vl.positions import mrope_positions

        before, after = render_qwen_prompt(tokenizer, prompt).split(VIDEO_PAD)
        count = int(tokens.embeds.shape[0])
        ids = (
            tokenizer.encode(before, add_special_tokens=False)
            + [video_token_id] * count
            + tokenizer.encode(after, add_special_tokens=False)
        )
        input_ids = torch.tensor([ids], dtype=torch.long)  # (1, L)
        coords = token_coords(tokens, inputs)  # (N, 3)
        positions, _ = mrope_positions(
            input_ids[0],
            video_token_id=video_token_id,
            token_coords=coords,
            time_interval=inputs.time_interval,
        )
        return PromptInputs(input_ids, positions)

    def text_tokens(self, tokenizer: Any, prompt: str) -> int:
        before, after = render_qwen_prompt(tokenizer, prompt).split(VIDEO_PAD)
        return len(tokenizer.encode(before, add_special_tokens=False)) + len(
            tokenizer.encode(after, add_special_tokens=False)
        )

    def visual_bound(self, frames: int, height: int, width: int) -> VisualBound:
        from earlytom.models.qwen_vl.preprocess import FACTOR, frame_size

        patches = -(-frames // 2)  # temporal patches of 2 frames, an odd count padded
        if height and width:
            h, w = frame_size(height, width, max_pixels=self.max_pixels, num_frames=frames)
            return VisualBound(patches, (h // FACTOR) * (w // FACTOR), 0)
        return VisualBound(patches, self.max_pixels // (FACTOR * FACTOR), 0)  # the largest frame


def token_coords(tokens: Any, inputs: VisionInputs) -> torch.Tensor:
    """(N, 3) int64 (temporal patch, row, column) of each kept token, in prompt order.

    A token of final frame f sits at the time of the input temporal patch f starts from
    (`tokens.sources`); stock (every token kept) is the full grid in raster order."""
    from earlytom.models.qwen_vl.positions import grid_coords

    if inputs.grid is None:
        raise ValueError("Qwen2.5-VL's vision inputs carry their token grid")
    rows, cols = inputs.grid
    if tokens.frame_ids is None:
        return grid_coords(len(tokens.sources) or tokens.frames_per_stage[-1], rows, cols)
    sources = torch.tensor(tokens.sources, dtype=torch.int64)
    frames = sources[tokens.frame_ids.cpu()]  # (N,)
    where = tokens.positions.cpu()  # (N,) raster index in the merged grid
    return torch.stack([frames, where // cols, where % cols], dim=-1)  # (N, 3)


def render_qwen_prompt(tokenizer: Any, prompt: str) -> str:
    """Chat-formatted text of one user turn holding one video and `prompt` (Qwen2.5-VL's template)."""
    from earlytom.models.prompt import check_prompt
    from earlytom.models.qwen_vl.tiny import QWEN_VL_CHAT_TEMPLATE

    check_prompt(prompt, tokenizer)
    own = tokenizer.chat_template or ""
    template = own if VIDEO_PAD in own else QWEN_VL_CHAT_TEMPLATE
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = str(tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                             add_generation_prompt=True))  # fmt: skip
    if text.count(VIDEO_PAD) != 1:
        raise ModelError(f"the chat template rendered {text.count(VIDEO_PAD)} video placeholders, not 1")
    return text

"""What one request may ask of a model: at most MAX_FRAMES frames, and a prompt that fits the
language model's context together with the visual tokens.

The visual tokens are counted with an upper bound known before any frame is encoded: the stock
model gives B·P + 1 (P pooled tokens per frame, the newline included); EarlyTom keeps at most
ceil(r·B·P) + B + 1 (each of the T' ≤ B frames Stage I leaves keeps ceil(P·r·B/T') tokens or
fewer, which rounds up by less than one token per frame), never more than the stock count.
Importing this module imports no model library: the command lines read MAX_FRAMES from it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from earlytom.config import EarlyTomConfig
from earlytom.errors import InputError

MAX_FRAMES = 1024  # frames one request may sample (32 in every paper run)
POOLED_TOKENS_PER_FRAME = 196  # SigLIP's 27×27 grid pooled to 14×14, in every registered family


def visual_tokens_bound(
    frames: int, config: EarlyTomConfig | None, tokens_per_frame: int = POOLED_TOKENS_PER_FRAME
) -> int:
    """The most visual tokens N + 1 that `frames` frames give under `config` (None: stock)."""
    stock = frames * tokens_per_frame
    if config is None or not config.enabled:
        return stock + 1
    return min(stock, math.ceil(config.retention * stock) + frames) + 1


def check_context(
    tokenizer: Any, prompt: str, *, frames: int, config: EarlyTomConfig | None, context: int,
    model: str = "the model", tokens_per_frame: int = POOLED_TOKENS_PER_FRAME,
) -> int:  # fmt: skip
    """The prompt's text tokens (chat template included); InputError when they and the visual
    tokens' upper bound do not fit in `context` positions (0: unknown, not checked). Checks the
    prompt (`check_prompt`) too."""
    from earlytom.models.prompt import build_input_ids

    text = int(build_input_ids(tokenizer, prompt, num_video_tokens=0, video_token_id=0).shape[1])
    visual = visual_tokens_bound(frames, config, tokens_per_frame)
    if 0 < context < text + visual:
        raise InputError(
            f"the prompt ({len(prompt)} characters, {text} tokens with the chat template) and up to "
            f"{visual} visual tokens of frames={frames} need {text + visual} positions, more than "
            f"{model}'s context of {context}: shorten the prompt or sample fewer frames (--frames)"
        )
    return text


def check_request(
    model: str, prompt: str, *, frames: int, config: EarlyTomConfig | None, random_weights: bool = False,
    cache_dir: Path | None = None,
) -> None:  # fmt: skip
    """`check_context` for a model named as `load_model` takes it, before its weights load (only its
    tokenizer and config are read)."""
    from earlytom.models.registry import load_text_side

    tokenizer, context = load_text_side(model, random_weights=random_weights, cache_dir=cache_dir)
    check_context(tokenizer, prompt, frames=frames, config=config, context=context, model=model)

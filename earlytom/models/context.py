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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from earlytom.config import EarlyTomConfig
from earlytom.errors import InputError

MAX_FRAMES = 1024  # frames one request may sample (32 in every paper run)
POOLED_TOKENS_PER_FRAME = 196  # SigLIP's 27×27 grid pooled to 14×14 (LLaVA's most per frame)


def visual_tokens_bound(
    frames: int, config: EarlyTomConfig | None, tokens_per_frame: int = POOLED_TOKENS_PER_FRAME,
    newline_tokens: int = 1,
) -> int:  # fmt: skip
    """The most visual tokens N (+ the newline) that `frames` frames give under `config` (None: stock)."""
    stock = frames * tokens_per_frame
    if config is None or not config.enabled:
        return stock + newline_tokens
    return min(stock, math.ceil(config.retention * stock) + frames) + newline_tokens


def check_context(
    tokenizer: Any, prompt: str, *, frames: int, config: EarlyTomConfig | None, context: int,
    model: str = "the model", tokens_per_frame: int = POOLED_TOKENS_PER_FRAME, newline_tokens: int = 1,
    text_tokens: Callable[[Any, str], int] | None = None,
) -> int:  # fmt: skip
    """The prompt's text tokens (chat template included, counted by `text_tokens`, LLaVA's template
    by default); InputError when they and the visual tokens' upper bound do not fit in `context`
    positions (0: unknown, not checked). Checks the prompt (`check_prompt`) too."""
    if text_tokens is None:
        from earlytom.models.adapters import LlavaAdapter
        from earlytom.models.families import LLAVA_ONEVISION

        text_tokens = LlavaAdapter(LLAVA_ONEVISION).text_tokens
    text = text_tokens(tokenizer, prompt)
    visual = visual_tokens_bound(frames, config, tokens_per_frame, newline_tokens)
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
    tokenizer and config are read); the visual tokens are bounded for the largest frames the family
    takes, since the video is not decoded yet."""
    from earlytom.models.adapters import adapter_for
    from earlytom.models.loading import load_text_side
    from earlytom.models.registry import family_of

    adapter = adapter_for(family_of(model))
    tokenizer, context = load_text_side(model, random_weights=random_weights, cache_dir=cache_dir)
    bound = adapter.visual_bound(frames, 0, 0)
    check_context(
        tokenizer, prompt, frames=bound.frames, config=config, context=context, model=model,
        tokens_per_frame=bound.tokens_per_frame, newline_tokens=bound.newline_tokens,
        text_tokens=adapter.text_tokens,
    )  # fmt: skip

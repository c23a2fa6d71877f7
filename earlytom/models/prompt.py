"""Prompt building: chat template rendering and the N+1 video placeholder tokens.

The HF processor would do this, but it pulls torchvision in through the video processor; the
rendering is small enough to own.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from earlytom.errors import InputError, ModelError

VIDEO_PLACEHOLDER = "<video>"

# The LLaVA-OneVision chat template as published with the llava-hf checkpoints (images, then
# videos, then text per message); used when a tokenizer carries no template that knows videos.
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}"
    "{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}"
    "{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\\n' + content['text'] }}"
    "{% endfor %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# What the chat template writes around the user's text in every registered family (LLaVA-OneVision
# on Qwen2): turn markers, the end-of-text token and the media placeholders. Any other ChatML-style
# `<|name|>` marker is refused too, whether or not a given tokenizer knows it.
TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>", VIDEO_PLACEHOLDER)
_CHATML_MARKER = re.compile(r"<\|[^|<>\s]{1,64}\|>")


def check_prompt(prompt: str, tokenizer: Any | None = None) -> None:
    """Refuse user text that is empty or could produce a special token: user text is text.

    Refused: the chat template's own tokens (TEMPLATE_TOKENS), any `<|name|>` marker and, with
    `tokenizer`, every added or special token it has; with `tokenizer` the text is also encoded on
    its own and must give no id of such a token. Raises InputError naming the token. The same rule
    serves the runtime, the command lines and a serving client (with or without a tokenizer).
    """
    if not prompt.strip():
        raise InputError("the prompt is empty: pass a question or instruction with --prompt")
    specials = _special_tokens(tokenizer)
    found = [token for token in (*TEMPLATE_TOKENS, *specials) if token in prompt]
    found += [marker.group(0) for marker in _CHATML_MARKER.finditer(prompt)]
    found.sort(key=prompt.find)  # name the first one in the text
    if not found and specials and tokenizer is not None:
        ids = set(tokenizer.encode(prompt, add_special_tokens=False))
        found = [token for token, token_id in specials.items() if token_id in ids]
    if found:
        raise InputError(
            f"the prompt must not contain '{found[0]}': user text cannot hold special tokens or "
            "chat-template markers (the turns and the video are placed for you), write the text without it"
        )


def _special_tokens(tokenizer: Any | None) -> dict[str, int]:
    """Every added or special token of `tokenizer` (text -> id); none without a tokenizer."""
    if tokenizer is None:
        return {}
    tokens = dict(tokenizer.get_added_vocab())
    for token in getattr(tokenizer, "all_special_tokens", ()):
        if token not in tokens:
            tokens[token] = int(tokenizer.convert_tokens_to_ids(token))
    return {token: int(token_id) for token, token_id in tokens.items() if token}


def render_video_prompt(tokenizer: Any, prompt: str) -> str:
    """The chat-formatted text of one user turn holding one video and `prompt`."""
    check_prompt(prompt, tokenizer)
    template = (
        tokenizer.chat_template if "video" in (tokenizer.chat_template or "") else LLAVA_OV_CHAT_TEMPLATE
    )
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    if text.count(VIDEO_PLACEHOLDER) != 1:  # a tokenizer's own template that misplaces videos
        raise ModelError(
            f"the chat template rendered {text.count(VIDEO_PLACEHOLDER)} video placeholders, not 1"
        )
    return str(text)


def build_input_ids(
    tokenizer: Any, prompt: str, *, num_video_tokens: int, video_token_id: int
) -> torch.Tensor:
    """(1, L) input ids with exactly `num_video_tokens` video placeholders where the video goes.

    The text around the placeholder is tokenized on its own, so the ids do not depend on how a
    tokenizer spells its video token (the 7B checkpoint's id 151647 need not be in a stand-in
    tokenizer's vocabulary).
    """
    before, after = render_video_prompt(tokenizer, prompt).split(VIDEO_PLACEHOLDER)
    ids = (
        tokenizer.encode(before, add_special_tokens=False)
        + [video_token_id] * num_video_tokens
        + tokenizer.encode(after, add_special_tokens=False)
    )
    return torch.tensor([ids], dtype=torch.long)


def embed_prompt(
    model: Any, input_ids: torch.Tensor, video: torch.Tensor, *, video_token_id: int
) -> torch.Tensor:
    """inputs_embeds (1, L, C) with the video tokens (N+1, C) scattered onto the placeholders.

    Give `input_ids` on the CPU (as build_input_ids makes them): the placeholder count is then
    checked without a device sync, and the ids move to the embedding's device here.
    """
    placeholders = int((input_ids.cpu() == video_token_id).sum())
    if placeholders != video.shape[0]:
        raise ValueError(f"{placeholders} video placeholders for {video.shape[0]} video tokens")
    table = model.get_input_embeddings()
    input_ids = input_ids.to(table.weight.device)
    embeds = table(input_ids)  # (1, L, C)
    mask = input_ids == video_token_id  # (1, L)
    return embeds.masked_scatter(mask[..., None], video.to(embeds.device, embeds.dtype))

"""Prompt building: chat template rendering and the N+1 video placeholder tokens.

The HF processor would do this, but it pulls torchvision in through the video processor; the
rendering is small enough to own.
"""

from __future__ import annotations

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


def check_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise InputError("the prompt is empty: pass a question or instruction with --prompt")
    if VIDEO_PLACEHOLDER in prompt:
        raise InputError(f"the prompt must not contain '{VIDEO_PLACEHOLDER}': the video is placed for you")


def render_video_prompt(tokenizer: Any, prompt: str) -> str:
    """The chat-formatted text of one user turn holding one video and `prompt`."""
    check_prompt(prompt)
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

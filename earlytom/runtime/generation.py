"""Prefill and greedy decoding on a LLaVA-OneVision language model, one sequence."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def prefill(model: Any, inputs_embeds: torch.Tensor) -> tuple[int, Any]:
    """Run the prompt (1, L, C) through the model; return the first greedy token and the KV cache."""
    out = model(inputs_embeds=inputs_embeds, use_cache=True, logits_to_keep=1)
    return int(out.logits[0, -1].argmax()), out.past_key_values


@torch.no_grad()
def decode_greedy(
    model: Any, first_token: int, cache: Any, *, max_new_tokens: int, stop_ids: set[int]
) -> list[int]:
    """Continue from the first token until a stop id or `max_new_tokens` tokens in total."""
    tokens = [first_token]
    device = model.get_input_embeddings().weight.device
    while len(tokens) < max_new_tokens and tokens[-1] not in stop_ids:
        step = torch.tensor([[tokens[-1]]], device=device)
        out = model(input_ids=step, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        tokens.append(int(out.logits[0, -1].argmax()))
    return tokens

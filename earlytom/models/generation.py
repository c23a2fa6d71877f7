"""Prefill and decoding on a LLaVA-OneVision language model, one sequence, optional Stage III.

Two calls so a caller can time "LLM prefill to first token" apart from decoding:

    first, generation = prefill(model, inputs_embeds, visual_span=span, inner=inner, sampling=None)
    tokens = decode(generation, max_new_tokens=64, stop_ids=eos_ids)  # starts with `first`

With `inner=None` (or ratio 0) this equals `model.generate(inputs_embeds=..., do_sample=False)`
token for token. `sampling=None` is greedy; a `SamplingConfig` samples with temperature, top-k and
top-p from its own seeded torch.Generator, so a fixed seed reproduces the same tokens.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch

from earlytom.errors import InputError
from earlytom.models.language import DecoderStack, InnerMergeConfig, PrefillOutput


@dataclass(frozen=True)
class SamplingConfig:
    """Multinomial sampling: logits / temperature, then top-k (0: off), then top-p (1: off)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None  # None: torch's global RNG

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise InputError(
                f"temperature={self.temperature} is out of range: must be > 0 (greedy: no sampling)"
            )
        if not (isinstance(self.top_p, int | float) and 0.0 < self.top_p <= 1.0):
            raise InputError(f"top_p={self.top_p} is out of range: must be in (0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise InputError(f"top_k={self.top_k} is out of range: must be an integer >= 0 (0: off)")


class TokenChooser:
    """Greedy argmax, or sampling with a generator that lives as long as the sequence."""

    def __init__(self, sampling: SamplingConfig | None, device: torch.device) -> None:
        self.sampling = sampling
        self.generator: torch.Generator | None = None
        if sampling is not None and sampling.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(sampling.seed)

    def __call__(self, logits: torch.Tensor) -> int:
        """logits (V,) fp32 -> the next token id."""
        if self.sampling is None:
            return int(logits.argmax())  # first maximum on ties, like HF greedy search
        s = self.sampling
        logits = logits / s.temperature
        if 0 < s.top_k < logits.numel():
            kth = torch.topk(logits, s.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if s.top_p < 1.0:
            probs, order = logits.softmax(-1).sort(descending=True)  # (V,), (V,)
            # Keep the smallest head whose mass reaches top_p: a token stays if the mass before it is
            # below top_p, so the most likely token always stays.
            drop = (probs.cumsum(-1) - probs) >= s.top_p
            logits = logits.index_fill(0, order[drop], float("-inf"))
        probs = logits.softmax(-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


class Generation:
    """One sequence after prefill: its cache, the next position and the tokens so far."""

    def __init__(self, stack: DecoderStack, out: PrefillOutput, chooser: TokenChooser) -> None:
        self.stack = stack
        self.cache = out.cache
        self.prompt_length = out.prompt_length  # L, before Stage III
        self.first_position = out.next_position  # where the first generated token sits
        self.positions = out.positions  # (L',) original positions held by layers >= K
        self.visual_attention = out.visual_attention
        self.dropped = out.dropped
        self.chooser = chooser
        self.tokens = [chooser(out.logits)]
        self.last_logits = out.logits  # (V,) fp32 logits that chose tokens[-1]

    @property
    def first_token(self) -> int:
        return self.tokens[0]

    @property
    def next_position(self) -> int:
        """Position of the next token fed: the first generated token's position (L, or M-RoPE's
        max + 1) plus tokens already fed."""
        return self.first_position + len(self.tokens) - 1

    def step(self) -> int:
        """Feed the last token and choose the next one."""
        self.last_logits = self.stack.step(self.tokens[-1], self.next_position, self.cache)
        self.tokens.append(self.chooser(self.last_logits))
        return self.tokens[-1]

    def cache_lengths(self) -> list[int]:
        """Entries per decoder layer (L + fed below K, L' + fed from K on)."""
        return [int(self.cache.get_seq_length(i)) for i in range(self.stack.num_layers)]


def prefill(
    model: Any,
    inputs_embeds: torch.Tensor,
    *,
    visual_span: tuple[int, int] | None = None,
    inner: InnerMergeConfig | None = None,
    sampling: SamplingConfig | None = None,
    positions: torch.Tensor | None = None,
) -> tuple[int, Generation]:
    """Run the prompt (1, L, C), Stage III on [start, stop) when `inner` is given; return the first
    token (already a host int, so a timer stopped after this call has waited for it) and the state.
    `positions`: (L,) or M-RoPE (3, L); None is 0..L-1."""
    stack = DecoderStack(model)
    out = stack.prefill(inputs_embeds, inner=inner, visual_span=visual_span, positions=positions)
    generation = Generation(stack, out, TokenChooser(sampling, out.logits.device))
    return generation.first_token, generation


def decode(generation: Generation, *, max_new_tokens: int, stop_ids: Collection[int] = ()) -> list[int]:
    """Continue until a stop id or `max_new_tokens` tokens in total (the first one included)."""
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens={max_new_tokens} is out of range: generate at least 1 token")
    tokens = generation.tokens
    while len(tokens) < max_new_tokens and tokens[-1] not in stop_ids:
        generation.step()
    return list(tokens[:max_new_tokens])


def generate(
    model: Any,
    inputs_embeds: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: Collection[int] = (),
    visual_span: tuple[int, int] | None = None,
    inner: InnerMergeConfig | None = None,
    sampling: SamplingConfig | None = None,
) -> list[int]:
    """prefill + decode in one call."""
    _, generation = prefill(model, inputs_embeds, visual_span=visual_span, inner=inner, sampling=sampling)
    return decode(generation, max_new_tokens=max_new_tokens, stop_ids=stop_ids)


def decode_greedy(
    model: Any, first_token: int, cache: Generation, *, max_new_tokens: int, stop_ids: Collection[int]
) -> list[int]:
    """The earlier API (`cache` is the state `prefill` returned): prefer `decode(generation, ...)`."""
    if cache.first_token != first_token:
        raise ValueError("decode_greedy must continue the Generation that produced first_token")
    return decode(cache, max_new_tokens=max_new_tokens, stop_ids=stop_ids)


def find_visual_span(input_ids: torch.Tensor, token_id: int) -> tuple[int, int] | None:
    """[start, stop) of the contiguous run of `token_id` in input_ids (1, L); None when absent.

    With the video token id this is Stage III's visual span: all N+1 placeholders, the trailing
    image_newline included, as in HoliTom (its `image_tokens` count the appended newline)."""
    where = torch.nonzero(input_ids[0] == token_id).flatten()
    if where.numel() == 0:
        return None
    start, stop = int(where[0]), int(where[-1]) + 1
    if stop - start != where.numel():
        raise InputError(
            f"the video placeholders in the prompt are not contiguous ({where.numel()} in {stop - start})"
        )
    return start, stop

"""The Qwen2 language model of a Video-LLM driven layer by layer, with Stage III in prefill.

The same driver runs LLaVA's Qwen2Model (1-D positions) and Qwen2.5-VL's text model (M-RoPE: a
(3, L) temporal/height/width position per row); positions are given by the caller, and every row
keeps its own through Stage III.

Composes the Hugging Face modules (embeddings, decoder layers, rotary embedding, final norm,
lm_head) and calls their public forwards; nothing is patched. Prefill runs layers < K on the whole
prompt (L tokens), reads the last prompt token's attention to the visual span at layer K-1 from
that layer's own submodules, folds the output of layer K-1 (`fold_visual_tokens`) and runs layers
≥ K on the L' = L - dropped remaining tokens at their original positions. The DynamicCache keeps
one length per layer (L below K, L' from K on); each decode step feeds one token at position
L + step and grows every layer by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from earlytom.compression.inner_merge import fold_visual_tokens
from earlytom.config import EarlyTomConfig
from earlytom.errors import ConfigError, InputError


@dataclass(frozen=True)
class InnerMergeConfig:
    """Stage III: at decoder layer `layer` (K), drop the fraction `ratio` of the visual tokens."""

    layer: int = 18
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or self.layer < 1:
            raise ConfigError(f"inner_layer={self.layer} is out of range: must be an integer >= 1")
        if not (isinstance(self.ratio, int | float) and 0.0 <= self.ratio < 1.0):
            raise ConfigError(f"inner_ratio={self.ratio} is out of range: must be in [0, 1)")

    @classmethod
    def from_config(cls, config: EarlyTomConfig) -> InnerMergeConfig | None:
        """The Stage III setting of `config`; None when compression is off or nothing is dropped."""
        if not config.enabled or config.inner_ratio == 0:
            return None
        return cls(config.inner_layer, config.inner_ratio)


@dataclass
class PrefillOutput:
    logits: torch.Tensor  # (V,) fp32: next-token logits after the last prompt token
    cache: Any  # DynamicCache: L entries in layers < K, L' in layers >= K
    prompt_length: int  # L rows in the prompt
    positions: torch.Tensor  # (L',) int64: original row indices of the rows layers >= K hold
    visual_attention: torch.Tensor | None  # (V,) fp32 attention row that chose the kept tokens
    dropped: int  # visual tokens removed at layer K
    next_position: int  # position of the first generated token: L (1-D) or max + 1 (M-RoPE)


class DecoderStack:
    """The text side of a LlavaOnevisionForConditionalGeneration, a Qwen2_5_VLForConditionalGeneration
    (or a bare Qwen2ForCausalLM)."""

    def __init__(self, model: Any) -> None:
        base = model.model
        self.text: Any = getattr(base, "language_model", base)  # Qwen2Model
        self.lm_head: Any = model.lm_head
        self.config: Any = self.text.config
        self.layers: Any = self.text.layers[: self.config.num_hidden_layers]
        types = set(getattr(self.config, "layer_types", None) or ["full_attention"])
        if types != {"full_attention"}:
            # Sliding-window layers need their own masks and cache layers; LLaVA-OV has none.
            raise ConfigError(f"only full-attention decoders are supported, this one has {sorted(types)}")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.text.embed_tokens(token_ids)  # (1, n, C)

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    def causal_mask(self, hidden: torch.Tensor) -> Any:
        """The causal mask for a cache-less square block (None for SDPA/flash: they use is_causal).

        Rows are in increasing original position, so index order is causal order even with the gaps
        Stage III leaves. No position ids are given: HF would read gaps as packed sequences.
        """
        from transformers.masking_utils import create_causal_mask

        return create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=None, cache=None)

    def rotary(self, hidden: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (1, n, hd), for the rows of `hidden` (1, n, C) at `positions` (n,), or at
        M-RoPE positions (3, n) (the text model's rotary module mixes the three sections itself)."""
        ids = positions[None] if positions.dim() == 1 else positions[:, None]  # (1, n) or (3, 1, n)
        cos, sin = self.text.rotary_emb(hidden, ids)
        return cos, sin

    def run_layers(
        self,
        hidden: torch.Tensor,
        layers: range,
        rotary: tuple[torch.Tensor, torch.Tensor],
        cache: Any,
        mask: Any,
    ) -> torch.Tensor:
        for i in layers:
            hidden = self.layers[i](
                hidden,
                attention_mask=mask,
                position_embeddings=rotary,
                cache=cache,
                use_cache=True,
            )
        return hidden

    def next_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(1, n, C) -> (V,) fp32 logits of the last row."""
        return self.lm_head(self.text.norm(hidden[:, -1:]))[0, -1].float()

    @torch.no_grad()
    def prefill(
        self,
        inputs_embeds: torch.Tensor,
        *,
        inner: InnerMergeConfig | None = None,
        visual_span: tuple[int, int] | None = None,
        positions: torch.Tensor | None = None,
    ) -> PrefillOutput:
        """Run the prompt (1, L, C); with `inner` and a non-empty span, merge at layer `inner.layer`.

        positions: (L,) or M-RoPE (3, L) int64 on the embeddings' device; None is 0..L-1."""
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[0] != 1:
            raise InputError(
                f"inputs_embeds must be (1, L, C) for one sequence, got {tuple(inputs_embeds.shape)}"
            )
        length = inputs_embeds.shape[1]
        if length < 1:
            raise InputError("the prompt is empty: give at least one token")
        rows = torch.arange(length, device=inputs_embeds.device)  # (L,)
        next_position = length if positions is None else int(positions.max()) + 1
        positions = rows if positions is None else positions
        if positions.shape[-1] != length:
            raise InputError(f"{positions.shape[-1]} positions for a prompt of {length} tokens")
        rotary = self.rotary(inputs_embeds, positions)
        mask = self.causal_mask(inputs_embeds)
        cache = self.new_cache()
        if inner is None or visual_span is None or visual_span[1] <= visual_span[0]:
            hidden = self.run_layers(inputs_embeds, range(self.num_layers), rotary, cache, mask)
            return PrefillOutput(self.next_logits(hidden), cache, length, rows, None, 0, next_position)

        k = inner.layer
        if k >= self.num_layers:
            raise ConfigError(
                f"inner_layer={k} is out of range: the language model has {self.num_layers} layers "
                f"(1..{self.num_layers - 1})"
            )
        start, stop = visual_span
        if not 0 <= start < stop < length:
            raise InputError(
                f"visual span [{start}, {stop}) must lie inside the prompt of {length} tokens and end "
                "before its last token (whose attention chooses the kept tokens)"
            )
        hidden = self.run_layers(inputs_embeds, range(k - 1), rotary, cache, mask)
        attention = last_row_attention(self.layers[k - 1], hidden, rotary)[start:stop]  # (V,)
        hidden = self.run_layers(hidden, range(k - 1, k), rotary, cache, mask)
        folded = fold_visual_tokens(hidden, (start, stop), attention, inner.ratio)
        # Layers >= K: the short sequence, each row rotated at its original position.
        short = folded.hidden
        rotary = self.rotary(short, positions[..., folded.positions])
        hidden = self.run_layers(short, range(k, self.num_layers), rotary, cache, self.causal_mask(short))
        return PrefillOutput(
            self.next_logits(hidden), cache, length, folded.positions, attention, folded.num_dropped,
            next_position,
        )  # fmt: skip

    @torch.no_grad()
    def step(self, token: int, position: int, cache: Any) -> torch.Tensor:
        """Feed one token at `position`; every layer's cache grows by one. Returns (V,) fp32 logits."""
        device = self.lm_head.weight.device
        hidden = self.embed(torch.tensor([[token]], device=device))  # (1, 1, C)
        rotary = self.rotary(hidden, torch.tensor([position], device=device))
        # A single query attends to every cached entry: no mask, whatever the layer's cache length.
        hidden = self.run_layers(hidden, range(self.num_layers), rotary, cache, None)
        return self.next_logits(hidden)


def last_row_attention(
    layer: Any, hidden: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Attention probabilities (L,) fp32 of the last row of `layer` on its input (1, L, C), mean over heads.

    Same steps as the layer's eager attention (input norm, projections, rotary, GQA, scaled
    softmax), for one query row: the last row of a causal mask sees every key, so it needs no mask.
    """
    attn = layer.self_attn
    head_dim = attn.head_dim
    groups = attn.num_key_value_groups
    cos, sin = rotary  # (1, L, hd) each
    normed = layer.input_layernorm(hidden)  # (1, L, C)
    q = attn.q_proj(normed[:, -1:]).view(-1, head_dim)  # (H, hd)
    k = attn.k_proj(normed).view(hidden.shape[1], -1, head_dim).transpose(0, 1)  # (Hkv, L, hd)
    q = rotate(q, cos[0, -1:], sin[0, -1:])  # (H, hd)
    k = rotate(k, cos[0], sin[0])  # (Hkv, L, hd)
    # Query head h reads key head h // groups (HF's repeat_kv), hence the (Hkv, groups) split of H.
    q = q.view(k.shape[0], groups, head_dim)  # (Hkv, groups, hd)
    logits = torch.matmul(q.float(), k.float().transpose(1, 2)) * attn.scaling  # (Hkv, groups, L)
    return logits.softmax(dim=-1).mean(dim=(0, 1))  # (L,)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as Qwen2 applies it (rotate-half convention); cos/sin broadcast on the last dims."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin

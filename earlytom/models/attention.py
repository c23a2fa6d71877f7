"""One SigLIP encoder layer run with explicit attention, to read its received attention.

Only the last prune layer needs attention probabilities; every other layer keeps the layer's own
(SDPA or fused) attention. This composes the layer's own submodules (norms, projections, MLP)
instead of patching its forward.
"""

from __future__ import annotations

from typing import Any

import torch


def layer_with_received_attention(
    layer: Any, hidden: torch.Tensor, *, frames_per_chunk: int | None = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a SiglipEncoderLayer on (T, S, D) and return (hidden_out, scores (T, S) fp32).

    scores[t, j] = attention probability that token j receives, averaged over heads and query
    rows. The softmax and its average are fp32 whatever the model dtype; frames are processed in
    chunks (None: all at once) so the (chunk, H, S, S) probability block stays bounded.
    """
    if frames_per_chunk is None:  # one pass (an exported graph has a symbolic frame count)
        return _layer_chunk(layer, hidden)
    outputs, scores = [], []
    for chunk in hidden.split(frames_per_chunk):
        out, received = _layer_chunk(layer, chunk)
        outputs.append(out)
        scores.append(received)
    return torch.cat(outputs), torch.cat(scores)


def _layer_chunk(layer: Any, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    attn = layer.self_attn
    frames, tokens, width = hidden.shape
    heads, head_dim = attn.num_heads, attn.head_dim

    normed = layer.layer_norm1(hidden)
    q = attn.q_proj(normed).view(frames, tokens, heads, head_dim).transpose(1, 2)  # (T, H, S, hd)
    k = attn.k_proj(normed).view(frames, tokens, heads, head_dim).transpose(1, 2)  # (T, H, S, hd)
    v = attn.v_proj(normed).view(frames, tokens, heads, head_dim).transpose(1, 2)  # (T, H, S, hd)
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scale  # (T, H, S, S) fp32
    probs = logits.softmax(dim=-1)
    received = probs.mean(dim=(1, 2))  # (T, S): mean over heads and query rows
    context = torch.matmul(probs.to(v.dtype), v)  # (T, H, S, hd)
    context = context.transpose(1, 2).reshape(frames, tokens, width)  # (T, S, D)
    hidden = hidden + attn.out_proj(context)
    hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden, received

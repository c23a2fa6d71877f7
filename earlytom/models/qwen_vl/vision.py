"""Qwen2.5-VL's vision transformer run on a (T, S, D) frame batch, EarlyTom's view of it.

A "frame" here is one temporal patch (`temporal_patch_size` = 2 video frames) and its S = gh·gw
patches stay in the HF processor's order: consecutive groups of 4 patches form one 2×2 merge unit,
merge units in raster order over the (gh/2, gw/2) merged grid. HF permutes merge units into window
order and packs frames with `cu_seqlens`; attention inside a window (window blocks) or inside a
frame (full-attention blocks) is permutation-equivariant, so this keeps processor order and uses a
boolean window mask instead: the same numbers, one static definition, frames independent (Stage I
may merge frames between any two layers and the geometry of the rest stays valid).

Everything composes the HF modules of a loaded `Qwen2_5_VisionTransformerPretrainedModel`
(patch_embed, rotary_pos_emb, blocks' norms/qkv/proj/mlp, merger); nothing is patched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True, eq=False)
class FrameGeometry:
    """What every block needs about one frame's patch grid, shared by all frames of a batch."""

    cos: torch.Tensor  # (S, head_dim) fp32, rotary table in processor order
    sin: torch.Tensor  # (S, head_dim) fp32
    window_mask: torch.Tensor  # (S, S) bool, True = may attend (window blocks)
    grid: tuple[int, int]  # (gh, gw) patches

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1]  # S


def patch_positions(gh: int, gw: int, merge: int, device: torch.device | None = None) -> torch.Tensor:
    """(S, 2) int64 (row, col) of each patch in processor order (HF's `get_vision_position_ids`)."""
    rows = torch.arange(gh, device=device)[:, None].expand(gh, gw)
    cols = torch.arange(gw, device=device)[None, :].expand(gh, gw)
    blocks = (gh // merge, merge, gw // merge, merge)
    rows = rows.reshape(blocks).transpose(1, 2).flatten()  # (S,) unit-major, raster inside a unit
    cols = cols.reshape(blocks).transpose(1, 2).flatten()  # (S,)
    return torch.stack([rows, cols], dim=-1)  # (S, 2)


def window_mask(
    gh: int, gw: int, *, merge: int, units_per_window: int, device: torch.device | None = None
) -> torch.Tensor:
    """(S, S) bool: patches a and b share an attention window (HF's `get_vision_window_index`).

    Windows are `units_per_window`² merge units tiling the merged grid from the top-left; the last
    window row and column are cut by the grid's edge (HF pads them and drops the padding).
    """
    positions = patch_positions(gh, gw, merge, device)  # (S, 2)
    side = merge * units_per_window  # patches per window side
    windows_w = -(-gw // side)
    window = (positions[:, 0] // side) * windows_w + positions[:, 1] // side  # (S,)
    return window[:, None] == window[None, :]  # (S, S)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_vision_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k (T, H, S, hd) rotated by (S, hd) tables in fp32, cast back (HF's vision rotary math)."""
    cos, sin = cos.float(), sin.float()
    q32, k32 = q.float(), k.float()
    q_out = q32 * cos + rotate_half(q32) * sin  # (T, H, S, hd)
    k_out = k32 * cos + rotate_half(k32) * sin  # (T, H, S, hd)
    return q_out.to(q.dtype), k_out.to(k.dtype)


class QwenFrameLayer(nn.Module):
    """One HF `Qwen2_5_VLVisionBlock` on (T, S, D): window or full attention inside each frame."""

    def __init__(self, block: Any, *, full_attention: bool) -> None:
        super().__init__()
        self.block: Any = block
        self.full_attention = full_attention

    def _qkv(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attn = self.block.attn
        frames, tokens, _ = hidden.shape
        qkv = attn.qkv(self.block.norm1(hidden))  # (T, S, 3·D)
        qkv = qkv.view(frames, tokens, 3, attn.num_heads, attn.head_dim)  # (T, S, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (T, H, S, hd) each
        q, k = apply_vision_rotary(q, k, cos, sin)
        return q, k, v

    def _finish(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Residual attention output, then the residual MLP; context (T, H, S, hd)."""
        frames, tokens, width = hidden.shape
        context = context.transpose(1, 2).reshape(frames, tokens, width)  # (T, S, D)
        hidden = hidden + self.block.attn.proj(context)
        return hidden + self.block.mlp(self.block.norm2(hidden))

    def forward(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, window_mask: torch.Tensor
    ) -> torch.Tensor:
        """hidden (T, S, D) -> (T, S, D); window_mask (S, S) is ignored on full-attention blocks."""
        q, k, v = self._qkv(hidden, cos, sin)  # (T, H, S, hd)
        mask = None if self.full_attention else window_mask
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.block.attn.scaling)
        return self._finish(hidden, context)

    def with_received_attention(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        window_mask: torch.Tensor,
        *,
        frames_per_chunk: int | None = 8,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The block with explicit attention: (hidden (T, S, D), scores (T, S) fp32).

        scores[t, j] = softmax probability token j receives, averaged over heads and query rows
        (each frame's scores sum to 1). Only full-attention blocks: a window block's attention is
        local, so received attention would not compare across windows. Frames go in chunks (None:
        all at once, as an exported graph with a symbolic frame count needs) to bound the
        (chunk, H, S, S) probabilities.
        """
        if not self.full_attention:
            raise ValueError(
                "received attention is only defined on a full-attention block: a window block's "
                "attention stays inside its window, so its scores would not compare across the frame"
            )
        if frames_per_chunk is None:
            return self._explicit(hidden, cos, sin)
        outputs, scores = [], []
        for chunk in hidden.split(frames_per_chunk):
            out, received = self._explicit(chunk, cos, sin)
            outputs.append(out)
            scores.append(received)
        return torch.cat(outputs), torch.cat(scores)

    def _explicit(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._qkv(hidden, cos, sin)  # (T, H, S, hd)
        logits = torch.matmul(q.float(), k.float().transpose(-1, -2))  # (T, H, S, S) fp32
        probs = (logits * self.block.attn.scaling).softmax(dim=-1)
        received = probs.mean(dim=(1, 2))  # (T, S): mean over heads and query rows
        context = torch.matmul(probs.to(v.dtype), v)  # (T, H, S, hd)
        return self._finish(hidden, context), received


class QwenVisionSide(nn.Module):
    """Qwen2.5-VL's vision transformer as EarlyTom stages: embed, frame layers, merge, pooling.

    Shares (never copies) the modules of a loaded `Qwen2_5_VLModel.visual`.
    """

    def __init__(self, visual: Any, config: Any) -> None:
        super().__init__()
        vision = getattr(config, "vision_config", config)  # a Qwen2_5_VLConfig or its vision part
        self.patch_embed: Any = visual.patch_embed
        self.rotary_pos_emb: Any = visual.rotary_pos_emb
        self.merger: Any = visual.merger
        self._full = tuple(int(i) for i in vision.fullatt_block_indexes)
        self.layers = nn.ModuleList(
            QwenFrameLayer(block, full_attention=i in self._full) for i, block in enumerate(visual.blocks)
        )
        self.vision_config = vision

    @classmethod
    def from_qwen(cls, model: Any) -> QwenVisionSide:
        """Share the modules of a loaded Qwen2_5_VLModel (the `.model` of the generation class)."""
        return cls(model.visual, model.config)

    @classmethod
    def from_visual(cls, visual: Any, config: Any) -> QwenVisionSide:
        """Share the modules of a Qwen2_5_VisionTransformerPretrainedModel."""
        return cls(visual, config)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.vision_config.hidden_size)  # D

    @property
    def out_hidden_size(self) -> int:
        return int(self.vision_config.out_hidden_size)  # C

    @property
    def full_attention_layers(self) -> tuple[int, ...]:
        return self._full

    @property
    def spatial_merge_size(self) -> int:
        return int(self.vision_config.spatial_merge_size)

    @property
    def merge_unit(self) -> int:
        return self.spatial_merge_size**2  # patches per merged token

    @property
    def temporal_patch_size(self) -> int:
        return int(self.vision_config.temporal_patch_size)

    @property
    def patch_size(self) -> int:
        return int(self.vision_config.patch_size)

    @property
    def units_per_window(self) -> int:
        """Merge units per window side (112 px windows, 14 px patches, 2×2 merge: 4)."""
        config = self.vision_config
        return int(config.window_size // config.spatial_merge_size // config.patch_size)

    def geometry(self, gh: int, gw: int, device: torch.device | None = None) -> FrameGeometry:
        """Rotary tables and window mask of a gh×gw patch grid (both multiples of the merge size)."""
        merge = self.spatial_merge_size
        if gh <= 0 or gw <= 0 or gh % merge or gw % merge:
            raise ValueError(f"a {gh}×{gw} patch grid does not tile into {merge}×{merge} merge units")
        positions = patch_positions(gh, gw, merge, device)  # (S, 2)
        # HF's axial rotary module; its first argument only names the device.
        cos, sin = self.rotary_pos_emb(positions, positions)  # (S, hd) each
        mask = window_mask(gh, gw, merge=merge, units_per_window=self.units_per_window, device=device)
        return FrameGeometry(cos=cos.float(), sin=sin.float(), window_mask=mask, grid=(gh, gw))

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (T, S, C·tp·p·p = 1176) in processor order -> (T, S, D)."""
        frames, tokens, _ = patches.shape
        hidden = self.patch_embed(patches.reshape(frames * tokens, -1))  # (T·S, D)
        return hidden.view(frames, tokens, -1)  # (T, S, D)

    def merge(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (T, S, D) -> (T, Q, C) through the 2×2 merger, Q = S / merge_unit."""
        frames, tokens, width = hidden.shape
        merged = self.merger(hidden.reshape(frames * tokens, width))  # (T·Q, C)
        return merged.view(frames, tokens // self.merge_unit, -1)  # (T, Q, C)

    def pool_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """scores (T, S) -> (T, Q) fp32: each merge unit's mean patch score."""
        frames, tokens = scores.shape
        return scores.float().view(frames, tokens // self.merge_unit, self.merge_unit).mean(dim=-1)  # (T, Q)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """The merger already made the LLM's token grid: (T, Q, C) pass unchanged."""
        return features

    @property
    def image_newline(self) -> None:
        return None  # Qwen2.5-VL puts no newline token after a video

    @property
    def newline_tokens(self) -> int:
        return 0

    def run_layers(
        self, hidden: torch.Tensor, geometry: FrameGeometry, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """hidden (T, S, D) through layers [start, stop) with `forward` (no scores)."""
        for layer in self.layers[start:stop]:
            hidden = layer(hidden, geometry.cos, geometry.sin, geometry.window_mask)
        return hidden

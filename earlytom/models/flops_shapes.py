"""Architecture numbers for FLOPs counting, read from the configs the registry knows (no weights)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from earlytom.compression.flops import ArchitectureShape
from earlytom.errors import ModelError
from earlytom.models.architectures import QWEN2_TEXT, architecture_config
from earlytom.models.registry import BUILT_LOCALLY, MODELS


def architecture_shape(name_or_path: str) -> ArchitectureShape:
    """The shape of `tiny`, `llava-ov-0.5b`, `llava-ov-7b`, or of a local checkpoint folder's config."""
    if name_or_path in BUILT_LOCALLY:  # tiny-vllm has tiny's widths (it regroups the heads)
        from earlytom.models.tiny import build_tokenizer, tiny_config

        # The tokenizer only sets the vocabulary size; training it takes a few milliseconds.
        return shape_from_config(tiny_config(build_tokenizer()))
    if name_or_path in QWEN2_TEXT:
        return shape_from_config(architecture_config(name_or_path))
    if Path(name_or_path).is_dir():
        from transformers import LlavaOnevisionConfig

        try:
            config = LlavaOnevisionConfig.from_pretrained(name_or_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"'{name_or_path}' has no readable LLaVA-OneVision config.json") from exc
        return shape_from_config(config)
    raise ModelError(
        f"unknown model '{name_or_path}': choose one of {', '.join(MODELS)} or give a local checkpoint folder"
    )


def shape_from_config(config: Any) -> ArchitectureShape:
    """A LlavaOnevisionConfig -> ArchitectureShape."""
    vision, text = config.vision_config, config.text_config
    grid = vision.image_size // vision.patch_size  # 27 for SigLIP at 384 px
    pooled_side = math.ceil(grid / 2)  # as `pool_grid` (HF's apply_pooling): 27×27 -> 14×14
    return ArchitectureShape(
        vision_layers=vision.num_hidden_layers,
        vision_hidden=vision.hidden_size,
        vision_mlp=vision.intermediate_size,
        vision_heads=vision.num_attention_heads,
        llm_layers=text.num_hidden_layers,
        llm_hidden=text.hidden_size,
        llm_mlp=text.intermediate_size,
        llm_heads=text.num_attention_heads,
        llm_kv_heads=text.num_key_value_heads or text.num_attention_heads,
        vocab_size=text.vocab_size,
        tokens_per_frame=grid * grid,
        pooled_tokens_per_frame=pooled_side * pooled_side,
        patch_dim=vision.num_channels * vision.patch_size * vision.patch_size,
        # Qwen2 has no head_dim field: the model uses hidden_size // num_attention_heads.
        llm_head_dim=getattr(text, "head_dim", None) or 0,
        llm_context=int(getattr(text, "max_position_embeddings", 0) or 0),
    )

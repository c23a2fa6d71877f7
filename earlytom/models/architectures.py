"""LLaVA-OneVision configurations, built without any download.

The published 0.5b/7b checkpoints and the locally built `tiny` share one builder, so the tiny model
follows the real conventions (feature layer, selection strategy, rope, norms) by construction.
"""

from __future__ import annotations

from typing import Any

from earlytom.errors import ModelError

# SigLIP-so400m as LLaVA-OneVision uses it: 384 px, 14 px patches (27×27 grid), 26 layers.
SIGLIP_VISION: dict[str, Any] = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
    image_size=384, patch_size=14, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh", vision_use_head=False,
)  # fmt: skip
QWEN2_TEXT: dict[str, dict[str, Any]] = {
    "llava-ov-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "llava-ov-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152128, tie_word_embeddings=False,
    ),
}  # fmt: skip
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID = 151646, 151647


def llava_onevision_config(
    vision: dict[str, Any], text: dict[str, Any], *, image_token_id: int, video_token_id: int
) -> Any:
    """A LlavaOnevisionConfig from SigLIP and Qwen2 fields, with the settings every checkpoint shares."""
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    text_config = Qwen2Config(
        **({"max_position_embeddings": 32768, "rms_norm_eps": 1e-6} | text),
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )
    return LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**vision),
        text_config=text_config,
        image_token_index=image_token_id,
        video_token_index=video_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
        tie_word_embeddings=text_config.tie_word_embeddings,
    )


def architecture_config(name: str) -> Any:
    """The LlavaOnevisionConfig of a published checkpoint."""
    if name not in QWEN2_TEXT:
        raise ModelError(f"--random-weights needs a known architecture: one of {', '.join(QWEN2_TEXT)}")
    return llava_onevision_config(
        SIGLIP_VISION, QWEN2_TEXT[name], image_token_id=IMAGE_TOKEN_ID, video_token_id=VIDEO_TOKEN_ID
    )

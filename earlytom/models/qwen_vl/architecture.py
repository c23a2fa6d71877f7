"""Qwen2.5-VL configurations, built without any download (`Qwen/Qwen2.5-VL-7B-Instruct`'s numbers).

The published 7B checkpoint and the locally built `tiny-qwen2.5-vl` share one builder, so the tiny
model follows the real conventions (window/full-attention pattern, 2-D vision rope, temporal
patches of 2 frames, the 2×2 patch merger, M-RoPE sections) by construction.
"""

from __future__ import annotations

from typing import Any

# The vision transformer of Qwen2.5-VL-7B: 32 blocks, full attention at 7/15/23/31 and 112-px
# windows (8×8 patches) elsewhere, 14 px patches over 2 frames, a 2×2 merger to the LLM width.
QWEN25_VL_7B_VISION: dict[str, Any] = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=3584,
    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu",
)  # fmt: skip
QWEN25_VL_7B_TEXT: dict[str, Any] = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
    num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)  # fmt: skip
MROPE_SECTION = [16, 24, 24]  # temporal, height, width shares of the rotary frequencies (7B)
# Token ids of Qwen2.5-VL's vocabulary.
QWEN_IDS: dict[str, Any] = dict(
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
)  # fmt: skip
# The authors' scripts: 32 frames, at most 200704 = 256·28² pixels per frame.
QWEN_FRAMES, QWEN_MAX_PIXELS = 32, 200704
QWEN_MIN_PIXELS = 128 * 28 * 28  # qwen-vl-utils' VIDEO_MIN_PIXELS: no video frame is resized below it


def qwen25_vl_config(
    vision: dict[str, Any],
    text: dict[str, Any],
    *,
    ids: dict[str, Any],
    mrope_section: list[int] | None = None,
) -> Any:
    """A Qwen2_5_VLConfig from vision and text fields, with the settings every checkpoint shares."""
    from transformers import Qwen2_5_VLConfig

    rope = {
        "rope_type": "default",
        "rope_theta": 1_000_000.0,
        "mrope_section": mrope_section or MROPE_SECTION,
    }
    text_config = text | {"rope_parameters": rope}
    return Qwen2_5_VLConfig(
        vision_config=vision,
        text_config=text_config,
        tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
        **ids,
    )


def qwen25_vl_7b_config() -> Any:
    """The Qwen2_5_VLConfig of Qwen/Qwen2.5-VL-7B-Instruct."""
    return qwen25_vl_config(QWEN25_VL_7B_VISION, QWEN25_VL_7B_TEXT, ids=QWEN_IDS)

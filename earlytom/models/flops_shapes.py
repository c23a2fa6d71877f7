"""Architecture numbers for FLOPs counting, read from configs (no weights).

LLaVA-OneVision and LLaVA-Video (a LlavaOnevisionConfig; `mm_spatial_pool_mode` sets the pooled
grid) and Qwen2.5-VL (a Qwen2_5_VLConfig; the frame size after resizing sets the token counts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from earlytom.compression.flops import ArchitectureShape
from earlytom.config import FAMILY_PRESETS
from earlytom.errors import ConfigError, ModelError
from earlytom.models.qwen_vl.architecture import QWEN_MAX_PIXELS
from earlytom.models.registry import MODELS, architecture_config, family_of, unknown_model
from earlytom.models.vision import pooled_side

Presets = dict[str, dict[float, tuple[float, tuple[int, ...]]]]  # task -> retention -> (tau, layers)
QWEN_FRAME_SIZE = (448, 448)  # max_pixels filled: 32×32 patches, 256 tokens per temporal patch
QWEN_MODEL_TYPE = "qwen2_5_vl"


def architecture_shape(name_or_path: str, *, frame_size: tuple[int, int] | None = None) -> ArchitectureShape:
    """The shape of a registered model or of a local checkpoint folder's config (no weights read).
    `frame_size` (height, width) in pixels after resizing: Qwen2.5-VL only."""
    return shape_from_config(_config_of(name_or_path), frame_size=frame_size)


def _config_of(name_or_path: str) -> Any:
    spec = MODELS.get(name_or_path)
    if spec is not None and not spec.built_locally:
        return architecture_config(name_or_path)
    if name_or_path in ("tiny", "tiny-vllm", "tiny-llava-video"):
        from earlytom.models.tiny import build_tokenizer, tiny_config

        # tiny-vllm regroups tiny's heads, tiny-llava-video pools them on average; the tokenizer
        # only sets the vocabulary size (training it takes a few milliseconds).
        config = tiny_config(build_tokenizer())
        config.mm_spatial_pool_mode = spec.family.pooling if spec is not None else "bilinear"
        return config
    if name_or_path == "tiny-qwen2.5-vl":
        from earlytom.models.qwen_vl.tiny import build_qwen_tokenizer, tiny_qwen_config

        return tiny_qwen_config(build_qwen_tokenizer())
    if Path(name_or_path).is_dir():
        return _folder_config(Path(name_or_path))
    raise unknown_model(name_or_path)


def default_frames(name_or_path: str) -> int:
    """The frames a model's authors sample: 32 (LLaVA-OneVision, Qwen2.5-VL), 64 (LLaVA-Video)."""
    try:
        return family_of(name_or_path).frames
    except ModelError:
        return 32


def flops_presets(name_or_path: str) -> Presets:
    """The (task -> retention -> (τ, prune layers)) table of a model's family."""
    spec = MODELS.get(name_or_path)
    if spec is not None:
        return FAMILY_PRESETS[spec.family.presets]
    if Path(name_or_path).is_dir() and _model_type(Path(name_or_path)) == QWEN_MODEL_TYPE:
        return FAMILY_PRESETS["qwen2.5-vl"]
    return FAMILY_PRESETS["llava-onevision"]


def shape_from_config(config: Any, *, frame_size: tuple[int, int] | None = None) -> ArchitectureShape:
    """A LlavaOnevisionConfig (with `mm_spatial_pool_mode` when set) or a Qwen2_5_VLConfig at
    `frame_size` (default QWEN_FRAME_SIZE) -> ArchitectureShape."""
    if type(config).__name__ == "Qwen2_5_VLConfig" or getattr(config, "model_type", "") == QWEN_MODEL_TYPE:
        return _qwen_shape(config, frame_size or QWEN_FRAME_SIZE)
    vision, text = config.vision_config, config.text_config
    grid = vision.image_size // vision.patch_size  # 27 for SigLIP at 384 px
    if frame_size is not None:
        raise ConfigError(
            f"frame_size={frame_size[0]}x{frame_size[1]} is for Qwen2.5-VL only: this LLaVA model resizes "
            f"every frame to {vision.image_size}×{vision.image_size}"
        )
    mode = getattr(config, "mm_spatial_pool_mode", None) or "bilinear"
    side = pooled_side(grid, mode)  # ModelError for a mode the vision path does not run
    return ArchitectureShape(
        vision_layers=vision.num_hidden_layers,
        vision_hidden=vision.hidden_size,
        vision_mlp=vision.intermediate_size,
        vision_heads=vision.num_attention_heads,
        **_llm_fields(text),
        tokens_per_frame=grid * grid,
        pooled_tokens_per_frame=side * side,
        patch_dim=vision.num_channels * vision.patch_size * vision.patch_size,
    )


def qwen_grid(frame_size: tuple[int, int], *, patch: int = 14, merge: int = 2) -> tuple[int, int]:
    """(rows, columns) of patches of a resized Qwen2.5-VL frame; ConfigError unless the processor's
    smart_resize could have produced it under the authors' max_pixels: both sides positive
    multiples of patch·merge = 28 and h·w <= QWEN_MAX_PIXELS (1280×720 gives 336×588)."""
    height, width = frame_size
    factor = patch * merge
    given = f"frame_size={height}x{width}"
    if height < factor or width < factor or height % factor or width % factor:
        raise ConfigError(
            f"{given} is not a resized Qwen2.5-VL frame: height and width must be positive multiples of "
            f"{factor} pixels (patch {patch} × merge {merge}), e.g. 336x588"
        )
    if height * width > QWEN_MAX_PIXELS:
        raise ConfigError(
            f"{given} has {height * width} pixels, more than the authors' max_pixels={QWEN_MAX_PIXELS}: "
            "frames are resized to at most that, e.g. 448x448 or 336x588"
        )
    return height // patch, width // patch


def _qwen_shape(config: Any, frame_size: tuple[int, int]) -> ArchitectureShape:
    vision = config.vision_config
    text = getattr(config, "text_config", None) or config
    merge, patch = vision.spatial_merge_size, vision.patch_size
    rows, cols = qwen_grid(frame_size, patch=patch, merge=merge)
    side = vision.window_size // (patch * merge)  # merged tokens per window side: 112 px -> 4
    # Windows tile the merged grid in side×side blocks, the last row and column of blocks cut short.
    windows = tuple(
        merge * merge * min(side, rows // merge - r) * min(side, cols // merge - c)
        for r in range(0, rows // merge, side)
        for c in range(0, cols // merge, side)
    )
    return ArchitectureShape(
        vision_layers=vision.depth,
        vision_hidden=vision.hidden_size,
        vision_mlp=vision.intermediate_size,
        vision_heads=vision.num_heads,
        **_llm_fields(text),
        tokens_per_frame=rows * cols,
        pooled_tokens_per_frame=rows * cols // (merge * merge),
        patch_dim=vision.in_channels * vision.temporal_patch_size * patch * patch,
        vision_gated_mlp=True,
        vision_windows=windows,
        vision_full_layers=tuple(vision.fullatt_block_indexes),
        temporal_patch=vision.temporal_patch_size,
        projector_group=merge * merge,
        projector_hidden=vision.hidden_size * merge * merge,
        newline_tokens=0,
    )


def _llm_fields(text: Any) -> dict[str, Any]:
    return dict(
        llm_layers=text.num_hidden_layers,
        llm_hidden=text.hidden_size,
        llm_mlp=text.intermediate_size,
        llm_heads=text.num_attention_heads,
        llm_kv_heads=text.num_key_value_heads or text.num_attention_heads,
        vocab_size=text.vocab_size,
        # Qwen2 has no head_dim field: the model uses hidden_size // num_attention_heads.
        llm_head_dim=getattr(text, "head_dim", None) or 0,
        llm_context=int(getattr(text, "max_position_embeddings", 0) or 0),
    )


def _model_type(folder: Path) -> str:
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("model_type", "")) if isinstance(data, dict) else ""


def _folder_config(folder: Path) -> Any:
    """A folder's config.json as a Qwen2_5_VLConfig or a LlavaOnevisionConfig (either LLaVA layout)."""
    if _model_type(folder) != QWEN_MODEL_TYPE:
        from earlytom.models.registry import folder_family
        from earlytom.models.vision import llava_config

        return llava_config(folder, folder_family(folder))
    from transformers import Qwen2_5_VLConfig

    try:
        return Qwen2_5_VLConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"'{folder}' has no readable Qwen2.5-VL config.json") from exc

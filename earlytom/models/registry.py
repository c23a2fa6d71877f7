"""Which models earlytom knows: one registry of model ids, each of one family (`families.py`).

Loading lives in `earlytom.models.loading`; this module only names, resolves and classifies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlytom.errors import ModelError
from earlytom.models.architectures import architecture_config as llava_architecture_config
from earlytom.models.families import (
    FAMILIES,
    LLAVA_ONEVISION,
    LLAVA_VIDEO,
    QWEN25_VL,
    ModelFamily,
    family_of_architecture,
)


@dataclass(frozen=True)
class ModelSpec:
    """One model id: its family, where its weights come from and what it is."""

    name: str
    family: ModelFamily
    hub_id: str | None  # None: built locally (random weights written on first use, then cached)
    summary: str

    @property
    def built_locally(self) -> bool:
        return self.hub_id is None


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("llava-ov-0.5b", LLAVA_ONEVISION, "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                  "LLaVA-OneVision Qwen2-0.5B"),
        ModelSpec("llava-ov-7b", LLAVA_ONEVISION, "llava-hf/llava-onevision-qwen2-7b-ov-hf",
                  "LLaVA-OneVision Qwen2-7B"),
        ModelSpec("llava-video-7b", LLAVA_VIDEO, "lmms-lab/LLaVA-Video-7B-Qwen2",
                  "LLaVA-Video-7B-Qwen2 (LLaVA-NeXT layout), 64 frames, average pooling"),
        ModelSpec("qwen2.5-vl-7b", QWEN25_VL, "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct"),
        ModelSpec("tiny", LLAVA_ONEVISION, None,
                  "random-weight LLaVA-OneVision, real 27×27 grid and 26 vision layers, built locally"),
        ModelSpec("tiny-llava-video", LLAVA_VIDEO, None,
                  "tiny's weights as a LLaVA-Video checkpoint (LLaVA-NeXT layout, average pooling)"),
        ModelSpec("tiny-qwen2.5-vl", QWEN25_VL, None,
                  "random-weight Qwen2.5-VL, real ViT geometry (32 blocks, windows, merger), built locally"),
        ModelSpec("tiny-vllm", LLAVA_ONEVISION, None,
                  "tiny as vLLM's CPU build serves it (2 query / 1 KV heads of size 32), built locally"),
    )
}  # fmt: skip

BUILT_LOCALLY = tuple(name for name, spec in MODELS.items() if spec.built_locally)


def unknown_model(name: str) -> ModelError:
    return ModelError(
        f"unknown model '{name}': choose one of {', '.join(MODELS)} or give a local checkpoint folder"
    )


def built_folder(name: str, cache_dir: Path | None = None) -> Path:
    """The cached folder of a locally built model, built first if missing."""
    from earlytom.models.tiny import tiny_path, tiny_serving_path

    if name == "tiny-vllm":
        return tiny_serving_path(cache_dir)
    if name == "tiny-llava-video":
        from earlytom.models.tiny import tiny_llava_video_path

        return tiny_llava_video_path(cache_dir)
    if name == "tiny-qwen2.5-vl":
        from earlytom.models.qwen_vl.tiny import tiny_qwen_path

        return tiny_qwen_path(cache_dir)
    return tiny_path(cache_dir)


def architecture_config(name: str) -> Any:
    """The HF config of a published checkpoint (for --random-weights), from the numbers in code."""
    spec = MODELS.get(name)
    if spec is None or spec.built_locally:
        known = [n for n, s in MODELS.items() if not s.built_locally]
        raise ModelError(f"--random-weights needs a known architecture: one of {', '.join(known)}")
    if spec.family.adapter == "qwen-vl":
        from earlytom.models.qwen_vl.architecture import qwen25_vl_7b_config

        return qwen25_vl_7b_config()
    config = llava_architecture_config("llava-ov-0.5b" if name == "llava-ov-0.5b" else "llava-ov-7b")
    config.mm_spatial_pool_mode = spec.family.pooling
    return config


def family_of(name_or_path: str) -> ModelFamily:
    """The family of a registered model or of a local checkpoint folder (by its config.json)."""
    spec = MODELS.get(name_or_path)
    if spec is not None:
        return spec.family
    return folder_family(resolve_checkpoint(name_or_path))


def folder_family(folder: Path) -> ModelFamily:
    """The family a checkpoint folder's config.json names; ModelError when none loads it."""
    config = folder / "config.json"
    try:
        raw = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"'{folder}' has no readable config.json: is it a model checkpoint folder?") from exc
    architectures = raw.get("architectures") or [] if isinstance(raw, dict) else []
    family = family_of_architecture(architectures, str(raw.get("model_type", "")))
    if family is None:
        known = sorted({a for f in FAMILIES.values() for a in f.architectures})
        raise ModelError(
            f"'{folder}' holds a {', '.join(architectures) or 'model of unknown architecture'} checkpoint: "
            f"earlytom loads {', '.join(known)}"
        )
    return family


def resolve_checkpoint(name_or_path: str, *, cache_dir: Path | None = None) -> Path:
    """The local folder of a registered model (hub cache only), of a checkpoint path, or of a hub
    repository id (`owner/name`, e.g. `lmms-lab/llava-onevision-qwen2-7b-ov`) already in the cache."""
    if name_or_path in BUILT_LOCALLY:
        return built_folder(name_or_path, cache_dir)
    spec = MODELS.get(name_or_path)
    if Path(name_or_path).is_dir() and spec is None:
        return Path(name_or_path)
    hub_id = spec.hub_id if spec is not None else name_or_path
    if hub_id is None or (spec is None and name_or_path.count("/") != 1):
        raise unknown_model(name_or_path)
    from huggingface_hub import snapshot_download

    label = f"{spec.name} ({hub_id})" if spec is not None else hub_id
    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception as exc:  # the hub raises several unrelated types for "not cached"
        if spec is None:
            raise unknown_model(name_or_path) from exc
        raise ModelError(
            f"weights of {label} are not in the local Hugging Face cache: download them first "
            f"(`hf download {hub_id}`), pass a local folder as --model, or use --random-weights for timing"
        ) from exc

"""Loading a model of any registered family into its Hugging Face class (never from the network).

A registered id resolves to a locally built folder, the local hub cache, or (with random weights)
its architecture; a folder or cached hub id is read as its config.json says: llava-hf
LLaVA-OneVision, the LLaVA-NeXT (lmms-lab) layout, or Qwen2.5-VL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import ModelError
from earlytom.models.families import LLAVA_ONEVISION, ModelFamily
from earlytom.models.registry import (
    BUILT_LOCALLY,
    MODELS,
    ModelSpec,
    architecture_config,
    built_folder,
    family_of,
    resolve_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    name: str
    model: Any  # LlavaOnevisionForConditionalGeneration or Qwen2_5_VLForConditionalGeneration, eval
    tokenizer: Any
    source: str  # a folder, or "random weights"
    checkpoint: Path | None = None  # the folder the weights came from; None for random weights
    random_label: str = ""  # how random weights were drawn (their fingerprint)
    family: ModelFamily = LLAVA_ONEVISION

    @cached_property
    def fingerprint(self) -> str:
        """The checkpoint's vision fingerprint, from its files on the CPU (not the live tensors)."""
        from earlytom.models.fingerprint import checkpoint_fingerprint

        return checkpoint_fingerprint(self.checkpoint) if self.checkpoint is not None else self.random_label

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    @property
    def eos_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None:
            found.add(int(self.tokenizer.eos_token_id))
        return found


def load_model(
    name_or_path: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    random_weights: bool = False,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load a registered model, a local checkpoint folder or a cached hub id, in its family's class."""
    spec = MODELS.get(name_or_path)
    if spec is not None and random_weights and not spec.built_locally:
        return _random(spec, device, dtype, cache_dir)
    family = family_of(name_or_path)
    folder = built_folder(name_or_path, cache_dir) if name_or_path in BUILT_LOCALLY else None
    folder = folder or resolve_checkpoint(name_or_path, cache_dir=cache_dir)
    model, tokenizer = load_folder(folder, family, dtype=dtype)
    return LoadedModel(
        name_or_path, model.to(device).eval(), tokenizer, str(folder), checkpoint=folder, family=family
    )


def load_folder(folder: Path, family: ModelFamily, *, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model on the CPU, tokenizer) of a checkpoint folder of `family`."""
    from transformers import AutoTokenizer

    if family.adapter == "qwen-vl":
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class
    else:
        from earlytom.models.llava_next import is_llava_next, load_llava_next

        if is_llava_next(folder):
            model, tokenizer = load_llava_next(folder, dtype=dtype)
            apply_pooling(model.config, family, folder)
            return model, tokenizer
        from transformers import LlavaOnevisionForConditionalGeneration as model_class  # type: ignore[assignment]
    try:
        # local_files_only: a folder, or the hub cache when the user downloaded the weights; never fetch.
        model = model_class.from_pretrained(folder, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"'{folder}' is not a loadable {family.name} checkpoint: {_first_line(exc)}"
        ) from exc
    if family.adapter == "llava":
        apply_pooling(model.config, family, folder)
    return model, tokenizer


def apply_pooling(config: Any, family: ModelFamily, folder: Path | None = None) -> None:
    """Set `mm_spatial_pool_mode` on a LLaVA config: the family's when it overrides (LLaVA-Video is
    evaluated with average pooling), else the checkpoint's own, else bilinear (llava-hf's)."""
    own = getattr(config, "mm_spatial_pool_mode", None)
    chosen = family.pooling if family.pooling != "bilinear" or own is None else own
    if own is not None and own != chosen:
        log.warning("%s says mm_spatial_pool_mode=%s; %s pools with %s", folder, own, family.name, chosen)
    config.mm_spatial_pool_mode = chosen


def load_text_side(
    name_or_path: str, *, random_weights: bool = False, cache_dir: Path | None = None
) -> tuple[Any, int]:
    """(tokenizer, the language model's context length, 0 when unknown) of a model as `load_model`
    would load it, without reading any weight; the same ModelError as `load_model` when it is not
    available."""
    from transformers import AutoConfig, AutoTokenizer

    spec = MODELS.get(name_or_path)
    if spec is not None and not spec.built_locally and random_weights:
        return _random_tokenizer(spec, cache_dir), context_length(architecture_config(spec.name))
    family = family_of(name_or_path)
    folder = resolve_checkpoint(name_or_path, cache_dir=cache_dir)
    if family.adapter == "llava":
        from earlytom.models.llava_next import is_llava_next, llava_next_text_side

        if is_llava_next(folder):
            tokenizer, config = llava_next_text_side(folder)
            return tokenizer, context_length(config)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"'{folder}' is not a loadable {family.name} checkpoint: {_first_line(exc)}"
        ) from exc
    return tokenizer, context_length(config)


def context_length(config: Any) -> int:
    """max_position_embeddings of a config's language model (0: not recorded)."""
    text = getattr(config, "text_config", config)
    return int(getattr(text, "max_position_embeddings", 0) or 0)


def _random(spec: ModelSpec, device: torch.device, dtype: torch.dtype, cache_dir: Path | None) -> LoadedModel:
    from earlytom.models.fingerprint import random_fingerprint

    model = random_model(architecture_config(spec.name), device, dtype)
    tokenizer = _random_tokenizer(spec, cache_dir)
    label = random_fingerprint(spec.name, f"model on {device.type}")
    return LoadedModel(
        spec.name, model.eval(), tokenizer, "random weights", random_label=label, family=spec.family
    )


def _random_tokenizer(spec: ModelSpec, cache_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(spec.hub_id, local_files_only=True)
    except (OSError, ValueError):
        # No real tokenizer cached: the family's tiny one, whose ids all exist in the real
        # vocabulary, is enough to time the architecture (the weights are random anyway).
        stand_in = "tiny-qwen2.5-vl" if spec.family.adapter == "qwen-vl" else "tiny"
        return AutoTokenizer.from_pretrained(built_folder(stand_in, cache_dir))


def random_model(config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """The family's HF model of `config` with HF's init, seeded (seed 0) on `device`.

    Seeded: repeated timing runs on one device merge the same frames. The caller's RNG is untouched.
    """
    from transformers import LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    qwen = type(config).__name__ == "Qwen2_5_VLConfig"
    model_class: Any = Qwen2_5_VLForConditionalGeneration if qwen else LlavaOnevisionForConditionalGeneration
    cuda = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(0)
        return model_class._from_config(config, dtype=dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

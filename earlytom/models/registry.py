"""Which models earlytom knows and how each one loads (never from the network)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import ModelError
from earlytom.models.architectures import architecture_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hub_id: str | None  # None: built locally
    summary: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "tiny", None, "random-weight LLaVA-OneVision, real 27×27 grid and 26 vision layers, built locally"
        ),
        ModelSpec(
            "tiny-vllm",
            None,
            "tiny as vLLM's CPU build serves it (2 query / 1 KV heads of size 32), built locally",
        ),
        ModelSpec("llava-ov-0.5b", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "LLaVA-OneVision Qwen2-0.5B"),
        ModelSpec("llava-ov-7b", "llava-hf/llava-onevision-qwen2-7b-ov-hf", "LLaVA-OneVision Qwen2-7B"),
    )
}

BUILT_LOCALLY = ("tiny", "tiny-vllm")  # random-weight models written on first use, then cached


def built_folder(name: str, cache_dir: Path | None = None) -> Path:
    """The cached folder of a locally built model, built first if missing."""
    from earlytom.models.tiny import tiny_path, tiny_serving_path

    return tiny_serving_path(cache_dir) if name == "tiny-vllm" else tiny_path(cache_dir)


@dataclass
class LoadedModel:
    name: str
    model: Any  # LlavaOnevisionForConditionalGeneration, eval mode
    tokenizer: Any
    source: str  # a folder, or "random weights"
    checkpoint: Path | None = None  # the folder the weights came from; None for random weights
    random_label: str = ""  # how random weights were drawn (their fingerprint)

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
    """Load a registered model, or a local folder holding a LLaVA-OneVision checkpoint."""
    if name_or_path in BUILT_LOCALLY:
        return _from_folder(name_or_path, built_folder(name_or_path, cache_dir), device, dtype)
    spec = MODELS.get(name_or_path)
    if spec is not None and random_weights:
        return _random(spec, device, dtype, cache_dir)
    if spec is not None:
        loaded = _from_folder(spec.name, spec.hub_id or spec.name, device, dtype, hub=True)
        loaded.checkpoint = resolve_checkpoint(spec.name, cache_dir=cache_dir)
        return loaded
    if Path(name_or_path).is_dir():
        return _from_folder(name_or_path, Path(name_or_path), device, dtype)
    raise ModelError(
        f"unknown model '{name_or_path}': choose one of {', '.join(MODELS)} or give a local checkpoint folder"
    )


def load_text_side(
    name_or_path: str, *, random_weights: bool = False, cache_dir: Path | None = None
) -> tuple[Any, int]:
    """(tokenizer, the language model's context length, 0 when unknown) of a model as `load_model`
    would load it, without reading any weight; the same ModelError as `load_model` when it is not
    available."""
    from transformers import AutoConfig, AutoTokenizer

    spec = MODELS.get(name_or_path)
    if spec is not None and spec.hub_id is not None and random_weights:
        config = architecture_config(spec.name)
        return _random_tokenizer(spec, cache_dir), context_length(config)
    folder = resolve_checkpoint(name_or_path, cache_dir=cache_dir)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"'{folder}' is not a loadable LLaVA-OneVision checkpoint: {_first_line(exc)}"
        ) from exc
    return tokenizer, context_length(config)


def context_length(config: Any) -> int:
    """max_position_embeddings of a LLaVA-OneVision config's language model (0: not recorded)."""
    text = getattr(config, "text_config", config)
    return int(getattr(text, "max_position_embeddings", 0) or 0)


def resolve_checkpoint(name_or_path: str, *, cache_dir: Path | None = None) -> Path:
    """The local folder of a registered model (hub cache only) or of a checkpoint path."""
    if name_or_path in BUILT_LOCALLY:
        return built_folder(name_or_path, cache_dir)
    spec = MODELS.get(name_or_path)
    if spec is not None and spec.hub_id is not None:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(spec.hub_id, local_files_only=True))
        except Exception as exc:  # the hub raises several unrelated types for "not cached"
            raise ModelError(
                f"weights of {spec.name} ({spec.hub_id}) are not in the local Hugging Face cache: download "
                f"them first (`hf download {spec.hub_id}`), pass a local folder as --model, or use "
                "--random-weights for timing"
            ) from exc
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    raise ModelError(
        f"unknown model '{name_or_path}': choose one of {', '.join(MODELS)} or give a local checkpoint folder"
    )


def _from_folder(
    name: str, where: str | Path, device: torch.device, dtype: torch.dtype, hub: bool = False
) -> LoadedModel:
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    try:
        # local_files_only: a folder, or the hub cache when the user downloaded the weights; never fetch.
        model: Any = LlavaOnevisionForConditionalGeneration.from_pretrained(
            where, dtype=dtype, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        if hub:
            raise ModelError(
                f"weights of {name} ({where}) are not in the local Hugging Face cache: download them first "
                f"(`hf download {where}`), pass a local folder as --model, or use --random-weights for timing"
            ) from exc
        raise ModelError(
            f"'{where}' is not a loadable LLaVA-OneVision checkpoint: {_first_line(exc)}"
        ) from exc
    folder = Path(where) if not hub else None  # a hub id is resolved to its cache folder by the caller
    return LoadedModel(name, model.to(device).eval(), tokenizer, str(where), checkpoint=folder)


def _random(spec: ModelSpec, device: torch.device, dtype: torch.dtype, cache_dir: Path | None) -> LoadedModel:
    from earlytom.models.fingerprint import random_fingerprint

    config = architecture_config(spec.name)
    model = random_model(config, device, dtype)
    tokenizer = _random_tokenizer(spec, cache_dir)
    label = random_fingerprint(spec.name, f"model on {device.type}")
    return LoadedModel(spec.name, model.eval(), tokenizer, "random weights", random_label=label)


def _random_tokenizer(spec: ModelSpec, cache_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    from earlytom.models.tiny import tiny_path

    try:
        return AutoTokenizer.from_pretrained(spec.hub_id, local_files_only=True)
    except (OSError, ValueError):
        # No real tokenizer cached: the tiny one's ids all exist in the real vocabulary, which is
        # enough to time the architecture (the weights are random anyway).
        return AutoTokenizer.from_pretrained(tiny_path(cache_dir))


def random_model(config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """LlavaOnevisionForConditionalGeneration of `config` with HF's init, seeded (seed 0) on `device`.

    Seeded: repeated timing runs on one device merge the same frames. The caller's RNG is untouched.
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    cuda = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(0)
        return LlavaOnevisionForConditionalGeneration._from_config(config, dtype=dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

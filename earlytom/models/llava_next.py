"""Checkpoints in the LLaVA-NeXT (lmms-lab) layout, loaded into the stock HF LLaVA-OneVision classes.

The paper ran `lmms-lab/llava-onevision-qwen2-7b-ov` and `lmms-lab/LLaVA-Video-7B-Qwen2`: a flat
Qwen2 config.json with `mm_*` keys and LLaVA-NeXT's tensor names (`LLAVA_NEXT_PREFIXES` renames).
- Placeholders: LLaVA-NeXT marks the visual span with id -200 and its tokenizer has no `<image>` /
  `<video>`: they are added as special tokens (151646 / 151647 on Qwen2's, the llava-hf ids), rows
  of the embedding table (152064 for the 7B) that the visual tokens replace, so never read.
- Feature layer: LLaVA-NeXT's SigLIP tower deletes layer 27 and returns the last hidden state of
  the 26 kept (no post-layernorm): layer -2 of 27 = HF's `vision_feature_layer=-1` on 26.
- Pooling (bilinear 27² -> 14², LLaVA-Video's average -> 13²) rides on the config under the
  authors' names (`LlavaNextPooling`); HF's own forward always pools bilinearly.
- Prompt: `LLAVA_NEXT_QWEN_TEMPLATE` renders a user turn as LLaVA-NeXT's `qwen_1_5` conversation
  (system turn, `user\\n<image>\\n{text}`); the llava-hf template has no system turn.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from earlytom.errors import ModelError
from earlytom.models.architectures import SIGLIP_VISION, llava_onevision_config

ARCHITECTURE = "LlavaQwenForCausalLM"
SIGLIP_TOWER = "google/siglip-so400m-patch14-384"
# Not an lmms-lab key: written by `write_llava_next` so the tiny model's SigLIP widths survive the
# flat config (the real towers are read as SIGLIP_VISION).
WIDTHS_KEY = "earlytom_vision_widths"
_WIDTH_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads")
_TEXT_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "vocab_size", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
    "eos_token_id", "hidden_act", "use_sliding_window", "sliding_window", "max_window_layers",
)  # fmt: skip
SAVED_VISION_LAYERS = int(SIGLIP_VISION["num_hidden_layers"])  # 26: LLaVA-NeXT deletes SigLIP's 27th

# LLaVA-NeXT name prefix -> name in the installed LlavaOnevisionForConditionalGeneration; a prefix
# without a trailing dot is an exact name.
LLAVA_NEXT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.image_newline", "model.image_newline"),
)
_VISION = "model.vision_tower.vision_tower.vision_model."
# Saved but never computed with: SigLIP's head (LLaVA-NeXT sets it to Identity), encoder layers past
# the 26 kept ones, and buffers that older transformers wrote (recomputed at load).
_HARMLESS = re.compile(
    rf"^{re.escape(_VISION)}(head\.|embeddings\.position_ids$)|(^|\.)rotary_emb\.inv_freq$"
)

# LLaVA-NeXT settings: (key, value when absent or null, accepted values, why others are refused).
_RULES: tuple[tuple[str, Any, tuple[Any, ...], str], ...] = (
    ("mm_projector_type", "linear", ("mlp2x_gelu",), "LLaVA-OneVision's projector is Linear, GELU, Linear"),
    ("mm_vision_select_layer", -2, (-2,), "LLaVA-NeXT's SigLIP tower keeps 26 of 27 layers and feeds the "
     "last one, which is -2 of 27 (HF's vision_feature_layer=-1 on the 26 saved), whatever this says"),
    ("mm_vision_select_feature", "patch", ("patch",), "SigLIP has no CLS token, EarlyTom uses its grid"),
    ("mm_patch_merge_type", "flat", ("spatial_unpad",), "only 'spatial_unpad' has the image_newline that "
     "ends the video"),
    ("add_faster_video", False, (False,), "its extra per-frame tokens have no place in LLaVA-OneVision"),
    ("mm_use_im_start_end", False, (False,), "its <im_start>/<im_end> have no place in LLaVA-OneVision"),
    ("mm_spatial_pool_mode", "bilinear", ("bilinear", "average"), "only bilinear (LLaVA-OneVision, 14×14 per "
     "frame) and average (LLaVA-Video, 13×13) pooling are implemented"),
    ("mm_spatial_pool_stride", 2, (2,), "LLaVA-NeXT's video path and this project pool with stride 2"),
    ("mm_newline_position", "one_token", ("one_token",), "this project feeds one image_newline after the "
     "video, not one per frame or row"),
)  # fmt: skip

LLAVA_NEXT_QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}"
    "{% set media = message['content'] | rejectattr('type', 'equalto', 'text') | list | length %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ ('\\n' if media > 0 or not loop.first else '') + content['text'] }}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class LlavaNextPooling:
    """How LLaVA-NeXT pools and terminates a video's tokens (its own names and values)."""

    mm_spatial_pool_mode: str  # "bilinear" (27² -> 14², LLaVA-OneVision) or "average" (27² -> 13²)
    mm_spatial_pool_stride: int  # 2
    mm_newline_position: str  # "one_token": one image_newline after the whole video


def is_llava_next(folder: Path) -> bool:
    """Whether `folder`'s config.json is in the LLaVA-NeXT layout (False for llava-hf or no config)."""
    try:
        flat = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(flat, dict) or ARCHITECTURE in (flat.get("architectures") or []):
        return isinstance(flat, dict)
    return flat.get("model_type") in ("llava_qwen", "llava") and "mm_vision_tower" in flat


def llava_next_config(folder: Path, *, overrides: Mapping[str, Any] | None = None) -> Any:
    """The LlavaOnevisionConfig of a LLaVA-NeXT folder; `overrides` replace config.json keys first,
    as LLaVA-NeXT's `overwrite_config` does (lmms-eval passes e.g. mm_newline_position so)."""
    return _translate(_read_flat(Path(folder), overrides), _tokenizer(Path(folder)), Path(folder))


def _read_flat(folder: Path, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    if not is_llava_next(folder):
        raise ModelError(
            f"'{folder}' is not a LLaVA-NeXT checkpoint (its config.json names no {ARCHITECTURE} and no "
            "mm_vision_tower): load a llava-hf folder with the registry instead"
        )
    flat: dict[str, Any] = json.loads((folder / "config.json").read_text())
    return flat | dict(overrides or {})


def _translate(flat: dict[str, Any], tokenizer: Any, folder: Path) -> Any:
    architectures = flat.get("architectures") or [ARCHITECTURE]
    if ARCHITECTURE not in architectures:
        raise ModelError(f"'{folder}' is a {architectures[0]}: only {ARCHITECTURE} (Qwen2) is supported")
    settings = _settings(flat)
    text = {field: flat[field] for field in _TEXT_FIELDS if field in flat}
    image_id, video_id = placeholder_ids(tokenizer, int(flat["vocab_size"]))
    config = llava_onevision_config(
        _vision_fields(flat), text, image_token_id=image_id, video_token_id=video_id
    )
    # LlavaQwenForCausalLM sets rope_scaling to None in __init__: only rope_theta matters.
    config.text_config.rope_parameters["rope_theta"] = float(flat.get("rope_theta", 1_000_000.0))
    config.image_grid_pinpoints = flat.get("image_grid_pinpoints", config.image_grid_pinpoints)  # images only
    config.vision_aspect_ratio = flat.get("image_aspect_ratio", config.vision_aspect_ratio)
    for name in LlavaNextPooling.__dataclass_fields__:
        setattr(config, name, settings[name])  # the authors' names, read by the video path
    return config


def _vision_fields(flat: dict[str, Any]) -> dict[str, Any]:
    tower = str(flat.get("mm_vision_tower", ""))
    if tower.rstrip("/").rsplit("/", 1)[-1] != SIGLIP_TOWER.split("/")[1]:
        raise ModelError(
            f"vision tower '{tower}' is not supported: only {SIGLIP_TOWER} (the LLaVA-OneVision and "
            "LLaVA-Video tower) is, use a checkpoint built on it"
        )
    widths = flat.get(WIDTHS_KEY) or {}
    vision = SIGLIP_VISION | {name: int(widths[name]) for name in _WIDTH_FIELDS if name in widths}
    if int(flat.get("mm_hidden_size", vision["hidden_size"])) != vision["hidden_size"]:
        raise ModelError(
            f"mm_hidden_size={flat['mm_hidden_size']} is not the SigLIP width {vision['hidden_size']}: "
            "the config does not describe its vision tower, fix config.json"
        )
    return vision


def _settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The checked value of every `_RULES` key (the rule's value where the key is absent or null)."""
    values = {}
    for key, absent, accepted, why in _RULES:
        value = absent if flat.get(key) is None else flat[key]
        if value not in accepted:
            raise ModelError(
                f"{key}={value!r} is not supported: {why}; set it to {accepted[0]!r} "
                "(in config.json, or with overrides)"
            )
        values[key] = value
    return values


def placeholder_ids(tokenizer: Any, vocab_size: int) -> tuple[int, int]:
    """(image, video) placeholder ids (< vocab_size), added as special tokens where missing."""
    missing = [token for token in ("<image>", "<video>") if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = tuple(int(tokenizer.convert_tokens_to_ids(token)) for token in ("<image>", "<video>"))
    if max(ids) >= vocab_size:
        raise ModelError(
            f"the placeholder ids {ids} do not fit the {vocab_size}-row embedding: the tokenizer has "
            "more tokens than the language model, use the checkpoint's own tokenizer"
        )
    return ids[0], ids[1]


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"'{folder}' has no loadable tokenizer ({type(exc).__name__}): copy the checkpoint's "
            "tokenizer files into it"
        ) from exc


def _rename(key: str, *, inverse: bool = False) -> str | None:
    """LLaVA-NeXT name -> installed HF name by LLAVA_NEXT_PREFIXES (the other way with `inverse`)."""
    for old, new in ((n, o) for o, n in LLAVA_NEXT_PREFIXES) if inverse else LLAVA_NEXT_PREFIXES:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key.removeprefix(old)
    return None


def _harmless(key: str) -> bool:
    layer = re.match(rf"^{re.escape(_VISION)}encoder\.layers\.(\d+)\.", key)
    return bool(_HARMLESS.search(key)) or (layer is not None and int(layer.group(1)) >= SAVED_VISION_LAYERS)


def llava_next_state_key(key: str) -> str | None:
    """LLaVA-NeXT tensor name -> the installed LlavaOnevisionForConditionalGeneration name.

    None for tensors never computed with (SigLIP's head, layers past 26, saved rotary/position
    buffers); ModelError for any other tensor (e.g. `model.faster_token`): weights without a place
    mean an architecture this loader does not reproduce.
    """
    if _harmless(key):
        return None
    name = _rename(key)
    if name is None:
        raise ModelError(
            f"tensor '{key}' has no place in LLaVA-OneVision: the checkpoint is not a LLaVA-OneVision "
            "or LLaVA-Video model (add_faster_video, another projector?)"
        )
    return name


def llava_next_vision_name(key: str) -> str | None:
    """LLaVA-NeXT key -> `earlytom.models.vision.VisionSide` name (None: not a vision-side tensor)."""
    name = None if _harmless(key) else _rename(key)
    for prefix, side in (
        ("model.vision_tower.embeddings.", "embeddings."),
        ("model.vision_tower.encoder.layers.", "layers."),
        ("model.multi_modal_projector.", "projector."),
    ):
        if name is not None and name.startswith(prefix):
            return side + name.removeprefix(prefix)
    return "image_newline" if name == "model.image_newline" else None


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"'{folder}' has no .safetensors weights: download the checkpoint's weight files")
    return files


def _read_state(folder: Path, expected: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """The folder's tensors under installed HF names, checked against `expected` (name -> shape)."""
    from safetensors import safe_open

    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(folder):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                name = llava_next_state_key(key)
                shape = tuple(handle.get_slice(key).get_shape())
                if name is not None and shape != tuple(expected.get(name, ())):
                    raise ModelError(
                        f"tensor '{key}' {shape} in '{folder}' does not fit the model its config.json "
                        f"describes ({tuple(expected[name]) if name in expected else 'no such tensor'}): "
                        "the config and the weights do not match"
                    )
                if name is not None:
                    state[name] = handle.get_tensor(key)
    return state


def _expected(config: Any) -> dict[str, torch.Size]:
    """Installed name -> shape of every tensor the model must load (tied weights once)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    with torch.device("meta"):
        skeleton = LlavaOnevisionForConditionalGeneration(config)
    kept = skeleton.state_dict().keys()  # named_parameters lists a tied weight once; buffers: persistent ones
    return {
        name: t.shape for name, t in [*skeleton.named_parameters(), *skeleton.named_buffers()] if name in kept
    }


def load_llava_next(
    folder: Path, *, dtype: torch.dtype, overrides: Mapping[str, Any] | None = None
) -> tuple[Any, Any]:
    """(LlavaOnevisionForConditionalGeneration in eval mode, tokenizer) of a LLaVA-NeXT folder."""
    from transformers import GenerationConfig, LlavaOnevisionForConditionalGeneration

    folder = Path(folder)
    tokenizer, config = llava_next_text_side(folder, overrides=overrides)
    expected = _expected(config)
    state = _read_state(folder, expected)
    missing = [str(_rename(name, inverse=True)) for name in expected if name not in state]
    if missing:
        raise ModelError(
            f"checkpoint '{folder}' lacks tensor '{missing[0]}' ({len(missing)} missing): the download is "
            "incomplete or not a LLaVA-OneVision model, fetch all its weight files"
        )
    model: Any = LlavaOnevisionForConditionalGeneration.from_pretrained(
        None, config=config, state_dict=state, dtype=dtype
    )
    end, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
    model.generation_config = GenerationConfig(
        eos_token_id=int(end), pad_token_id=int(pad) if pad is not None else None
    )
    return model.eval(), tokenizer


def llava_next_text_side(folder: Path, *, overrides: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """(tokenizer as `load_llava_next` gives it, the translated config) without reading a weight."""
    tokenizer = _tokenizer(Path(folder))
    config = _translate(_read_flat(Path(folder), overrides), tokenizer, Path(folder))
    if "video" not in (tokenizer.chat_template or ""):
        tokenizer.chat_template = LLAVA_NEXT_QWEN_TEMPLATE
    return tokenizer, config


def write_llava_next(hf_folder: Path, out: Path, *, pool_mode: str = "bilinear", shards: int = 1) -> None:
    """Write a llava-hf-layout folder (e.g. `tiny`) in the LLaVA-NeXT layout into `out`.

    The tokenizer loses its chat template (lmms-lab's knows no media) but keeps `<image>`/`<video>`
    where its vocabulary has them (tiny's); `shards` > 1 writes an index, as large checkpoints are
    stored. Any pool_mode is written, so that refused ones can be tried.
    """
    from safetensors.torch import save_file
    from transformers import LlavaOnevisionForConditionalGeneration

    hf_folder, out = Path(hf_folder), Path(out)
    model: Any = LlavaOnevisionForConditionalGeneration.from_pretrained(
        hf_folder, dtype="auto", local_files_only=True
    )
    tied = bool(model.config.text_config.tie_word_embeddings)
    tensors = {
        str(_rename(name, inverse=True)): tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if not (tied and name == "lm_head.weight")  # a tied checkpoint stores the embedding once
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_flat_config(model.config, pool_mode), indent=2))
    files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    files = files if shards > 1 else ["model.safetensors"]
    weight_map = {name: files[i % shards] for i, name in enumerate(sorted(tensors))}
    for file in files:
        part = {name: tensors[name] for name, where in weight_map.items() if where == file}
        save_file(part, str(out / file), metadata={"format": "pt"})
    if shards > 1:
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    _copy_tokenizer(hf_folder, out)


def _flat_config(config: Any, pool_mode: str) -> dict[str, Any]:
    """A flat lmms-lab style config.json for a LlavaOnevisionConfig in SigLIP-so400m geometry."""
    vision, text = config.vision_config.to_dict(), config.text_config.to_dict()
    other = [k for k, v in SIGLIP_VISION.items() if k not in _WIDTH_FIELDS and vision.get(k) != v]
    if other or config.vision_feature_layer != -1 or config.vision_feature_select_strategy != "full":
        raise ModelError(
            f"'{config.name_or_path}' is not SigLIP-so400m's geometry (differs in {other or 'features'}): "
            "the LLaVA-NeXT layout cannot express it"
        )
    flat: dict[str, Any] = {"architectures": [ARCHITECTURE], "model_type": "qwen2"}
    flat |= {field: text[field] for field in _TEXT_FIELDS if field in text}
    flat["rope_theta"] = float(text["rope_parameters"]["rope_theta"])
    flat |= {
        "mm_vision_tower": SIGLIP_TOWER, "mm_hidden_size": vision["hidden_size"],
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "mm_patch_merge_type": "spatial_unpad",
        "mm_spatial_pool_mode": pool_mode, "mm_spatial_pool_stride": 2, "mm_newline_position": "one_token",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "image_aspect_ratio": config.vision_aspect_ratio, "image_grid_pinpoints": config.image_grid_pinpoints,
        "use_mm_proj": True, "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model",
        "tokenizer_model_max_length": text.get("max_position_embeddings", 32768),
        "tokenizer_padding_side": "right", "torch_dtype": str(config.dtype).removeprefix("torch."),
    }  # fmt: skip
    widths = {name: vision[name] for name in _WIDTH_FIELDS if vision[name] != SIGLIP_VISION[name]}
    if widths:
        flat[WIDTHS_KEY] = widths
    return flat


def _copy_tokenizer(source: Path, out: Path) -> None:
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    settings = json.loads((source / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)  # and no chat_template.jinja: lmms-lab's template is text-only
    (out / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))

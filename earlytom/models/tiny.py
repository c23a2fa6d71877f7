"""The embedded default model `tiny`: a random-weight LLaVA-OneVision built locally.

Why it exists: the tests and the README's first command need a model that loads with the stock
`transformers` classes without any hub download. `tiny` is built on the spot from a fixed seed and
a tokenizer trained here on an embedded corpus, then cached under `default_cache_dir()`.

Its widths are tiny, but its geometry is the real one: SigLIP at 384 px with 14 px patches (a
27×27 = 729-token grid per frame) and all 26 vision layers, so the paper's presets (layer indices
such as 10, 21, 23, per-frame token budgets) apply unchanged; the language side has Qwen2's 24
layers. The outputs are meaningless; the shapes, ids and code paths are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from earlytom.models.architectures import SIGLIP_VISION, llava_onevision_config
from earlytom.models.prompt import LLAVA_OV_CHAT_TEMPLATE

# Bump whenever anything below changes what gets built: it names the cache folder.
TINY_VERSION = "1"
SERVING_VERSION = "1"  # the same for what `tiny_serving_path` adds
LLAVA_VIDEO_VERSION = "1"  # the same for `tiny_llava_video_path`

SERVING_TEXT_HEADS = {"num_attention_heads": 2, "num_key_value_heads": 1}
# LlavaOnevisionProcessor's settings for SigLIP at 384 px (the llava-hf checkpoints' values).
_PIXELS = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
    "rescale_factor": 1 / 255, "size": {"height": 384, "width": 384},
}  # fmt: skip
SERVING_PROCESSOR = {
    "processor_class": "LlavaOnevisionProcessor",
    "image_token": "<image>",
    "video_token": "<video>",
    "num_image_tokens": 729,
    "vision_aspect_ratio": "anyres_max_9",
    "vision_feature_select_strategy": "full",
    "image_processor": _PIXELS | {"do_pad": True, "image_processor_type": "LlavaOnevisionImageProcessor"},
    "video_processor": _PIXELS
    | {
        "do_sample_frames": False,
        "return_metadata": False,
        "video_processor_type": "LlavaOnevisionVideoProcessor",
    },
}

SEED = 20250101
TARGET_VOCAB = 1000
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

_SUBJECTS = (
    "a man|a woman|two children|the dog|a cyclist|an old chef|the players|a young girl|a teacher|the crowd|"
    "a farmer|the musician|a tall boy|the dancers|a police officer|a small cat|the driver|a student|"
    "the audience|a painter|a doctor|the baby|a fisherman|the referee|a couple|the waiter"
)
_VERBS = (
    "walks runs cooks jumps dances reads plays waves talks sings climbs swims throws catches opens "
    "closes carries pushes pulls drives rides paints writes laughs smiles points holds drops kicks "
    "watches follows cleans builds cuts pours lifts shakes sits stands sleeps eats drinks"
)
_PLACES = (
    "in the park|on a busy street|in a kitchen|at the beach|near a river|inside the room|on the stage|"
    "in a forest|at the station|on a mountain|in the garden|behind the house|across the bridge|"
    "in a classroom|at the market|under a tree|in the snow|beside a lake|on the football field|"
    "in an office|at the airport|in the museum"
)
_COLOURS = "red blue green yellow black white orange purple grey brown pink golden silver dark bright"
_THINGS = (
    "car ball shirt hat door bicycle table umbrella kite boat guitar camera phone book bottle window "
    "chair bag jacket flag horse train bus plate cup knife box lamp clock picture ladder rope bucket "
    "tent sign flower basket helmet scarf shoe"
)
_OPENERS = (
    "In this video,|The video shows that|At the start,|Later in the clip,|Finally,|Suddenly,|"
    "Meanwhile,|Then|After a few seconds,|In the background,|Near the end,|Slowly,"
)
_QUESTIONS = (
    "Describe the video.|What happens in the video?|What colour is the car?|How many people are there?|"
    "Where does the scene take place?|What is the person doing?|Answer with a single word.|"
    "Summarize the clip in one sentence.|Which object appears first?|Why does the camera move quickly?"
)


def _corpus() -> list[str]:
    """About 1200 plain English sentences, generated deterministically from the word lists."""
    subjects, verbs, places = _SUBJECTS.split("|"), _VERBS.split(), _PLACES.split("|")
    colours, things, openers = _COLOURS.split(), _THINGS.split(), _OPENERS.split("|")
    lines = _QUESTIONS.split("|")
    for i in range(600):  # co-prime strides so every word meets many others
        subject, verb, place = subjects[i % len(subjects)], verbs[i * 5 % len(verbs)], places[i * 3 % 22]
        colour, thing, opener = colours[i * 7 % 15], things[i * 11 % len(things)], openers[i % 12]
        lines.append(f"{opener} {subject} {verb} the {colour} {thing} {place}.")
        lines.append(f"{subject.capitalize()} {verb} {place}. {colour.capitalize()} {thing}s everywhere.")
    return lines


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))  # type: ignore[arg-type]


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/earlytom, or ~/.cache/earlytom."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "earlytom"


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the embedded corpus; the special tokens are single ids."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        padding_side="left",
    )
    tokenizer.chat_template = LLAVA_OV_CHAT_TEMPLATE
    return tokenizer


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> LlavaOnevisionConfig:
    """The real SigLIP geometry (384 px, 14 px patches, 26 layers) at tiny widths; 24 Qwen2 layers."""
    vision = SIGLIP_VISION | {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
    text = {
        "vocab_size": -(-len(tokenizer) // 64) * 64,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 24,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
        "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
    }
    config: LlavaOnevisionConfig = llava_onevision_config(
        vision,
        text,
        image_token_id=_token_id(tokenizer, "<image>"),
        video_token_id=_token_id(tokenizer, "<video>"),
    )
    return config


def build_tiny(out_dir: Path) -> None:
    """Write the model (safetensors), tokenizer and generation config into `out_dir`; deterministic."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer)
    with torch.random.fork_rng(devices=[]):  # the caller's RNG state is left untouched
        torch.manual_seed(SEED)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
    )
    save_quietly(model, tokenizer, out_dir)


def save_quietly(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """save_pretrained of a model and its tokenizer without HF's shard bar (callers report progress)."""
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def tiny_path(cache_dir: Path | None = None) -> Path:
    """The cached `tiny` folder, built first if missing."""
    return cached_build(cache_dir, f"tiny-v{TINY_VERSION}", build_tiny)


def tiny_serving_path(cache_dir: Path | None = None) -> Path:
    """The cached `tiny-vllm` folder: `tiny` as vLLM's CPU build serves it, built first if missing.

    Same tensors as `tiny`; the language model reads them as 2 query heads and 1 KV head (head
    size 32: vLLM's CPU attention refuses tiny's 16; the weight shapes are unchanged), the vision
    tensors are named as in the llava-hf checkpoints (`vision_tower.vision_model.*`, what vLLM's
    loader reads), and a processor config tells vLLM how to preprocess images and videos.
    """
    source = tiny_path(cache_dir)
    return cached_build(
        cache_dir, f"tiny-vllm-v{TINY_VERSION}.{SERVING_VERSION}", lambda out: _build_serving(source, out)
    )


def tiny_llava_video_path(cache_dir: Path | None = None) -> Path:
    """The cached `tiny-llava-video` folder: tiny's weights as LLaVA-Video is published, built first
    if missing: the LLaVA-NeXT (lmms-lab) layout, with average pooling, so every run of it goes
    through the layout's loader."""
    from earlytom.models.llava_next import write_llava_next

    source = tiny_path(cache_dir)
    return cached_build(
        cache_dir,
        f"tiny-llava-video-v{TINY_VERSION}.{LLAVA_VIDEO_VERSION}",
        lambda out: write_llava_next(source, out, pool_mode="average"),
    )


def _build_serving(source: Path, out_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out_dir / name)
    config = json.loads((source / "config.json").read_text())
    config["text_config"] |= SERVING_TEXT_HEADS
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "processor_config.json").write_text(json.dumps(SERVING_PROCESSOR, indent=2))
    tensors = load_file(str(source / "model.safetensors"))
    renamed = {_llava_hf_name(key): tensor for key, tensor in tensors.items()}
    save_file(renamed, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def _llava_hf_name(key: str) -> str:
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key.removeprefix("vision_tower.")
    return key


def cached_build(cache_dir: Path | None, folder: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir / folder`, built first if missing.

    The build goes into a temporary folder inside `cache_dir` that is then renamed into place, so
    the final path never holds a partial model; if another process got there first, ours is dropped.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / folder
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=cache_dir))
    try:
        build(tmp)
        for entry in [tmp, *tmp.iterdir()]:  # mkdtemp / atomic writers leave 0700 / 0600 behind
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final

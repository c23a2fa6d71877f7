"""`tiny-qwen2.5-vl`: a random-weight Qwen2.5-VL built locally, like `earlytom.models.tiny`.

The tokenizer is trained on tiny's embedded corpus with Qwen2.5-VL's special tokens as single
ids and a chat template that renders like Qwen2.5-VL-Instruct's. The geometry is the 7B's (a
32-block ViT with full attention at 7/15/23/31 and 112 px windows elsewhere, 14 px patches over 2
frames, the 2×2 merger, 2 tokens per second); the widths are tiny and the language model has 24
layers, head size 16, M-RoPE sections [2, 3, 3] (the 7B's 16:24:24 scaled to 8 frequencies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2_5_VLForConditionalGeneration

from earlytom.models.qwen_vl.architecture import QWEN25_VL_7B_VISION, qwen25_vl_config
from earlytom.models.tiny import SEED, TARGET_VOCAB, _corpus, cached_build, save_quietly

# Bump whenever anything below changes what gets built: it names the cache folder.
TINY_QWEN_VERSION = "1"
TINY_QWEN_NAME = "tiny-qwen2.5-vl"
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
VIDEO_PAD, IMAGE_PAD = "<|video_pad|>", "<|image_pad|>"
SYSTEM_PROMPT = "You are a helpful assistant."
TINY_MROPE_SECTION = [2, 3, 3]  # head size 16 -> 8 rotary frequencies, the 7B's 16:24:24

# Renders as Qwen2.5-VL-Instruct's template: the default system turn unless the first message is
# one, then ChatML turns whose content parts are concatenated, a video written as
# <|vision_start|><|video_pad|><|vision_end|> (an image with <|image_pad|>), "Video k: " /
# "Picture k: " before them with add_vision_id.
QWEN_VL_CHAT_TEMPLATE = (
    "{% set counts = namespace(image=0, video=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{% set counts.image = counts.image + 1 %}"
    "{% if add_vision_id %}{{ 'Picture ' ~ counts.image ~ ': ' }}{% endif %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "{% set counts.video = counts.video + 1 %}"
    "{% if add_vision_id %}{{ 'Video ' ~ counts.video ~ ': ' }}{% endif %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif 'text' in part %}"
    "{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))  # type: ignore[arg-type]


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on tiny's corpus; Qwen2.5-VL's special tokens are single ids."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB,
        min_frequency=1,
        special_tokens=QWEN_SPECIAL_TOKENS,
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
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen_config(tokenizer: PreTrainedTokenizerFast) -> Any:
    """The 7B's vision geometry at tiny widths; a 24-layer, 64-wide language model with M-RoPE."""
    vision = QWEN25_VL_7B_VISION | {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64,
                                    "out_hidden_size": 64}  # fmt: skip
    text = {
        "vocab_size": -(-len(tokenizer) // 64) * 64,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 24,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "bos_token_id": _token_id(tokenizer, "<|endoftext|>"),
        "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
        "pad_token_id": _token_id(tokenizer, "<|endoftext|>"),
    }
    ids = {
        "image_token_id": _token_id(tokenizer, IMAGE_PAD),
        "video_token_id": _token_id(tokenizer, VIDEO_PAD),
        "vision_start_token_id": _token_id(tokenizer, "<|vision_start|>"),
        "vision_end_token_id": _token_id(tokenizer, "<|vision_end|>"),
    }
    return qwen25_vl_config(vision, text, ids=ids, mrope_section=list(TINY_MROPE_SECTION))


def build_tiny_qwen(out_dir: Path) -> None:
    """Write the model (safetensors), tokenizer and generation config into `out_dir`; deterministic."""
    out_dir = Path(out_dir)
    tokenizer = build_qwen_tokenizer()
    config = tiny_qwen_config(tokenizer)
    with torch.random.fork_rng(devices=[]):  # the caller's RNG state is left untouched
        torch.manual_seed(SEED)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=_token_id(tokenizer, "<|endoftext|>"),
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
    )
    save_quietly(model, tokenizer, out_dir)


def tiny_qwen_path(cache_dir: Path | None = None) -> Path:
    """The cached `tiny-qwen2.5-vl` folder, built first if missing."""
    return cached_build(cache_dir, f"{TINY_QWEN_NAME}-v{TINY_QWEN_VERSION}", build_tiny_qwen)

"""`tiny-qwen2.5-vl`: geometry, tokenizer and template, determinism, cache, stock HF forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from earlytom.models.qwen_vl import tiny as qt
from earlytom.models.qwen_vl.positions import grid_coords, mrope_positions, time_interval
from earlytom.models.qwen_vl.preprocess import hf_video_kwargs, preprocess_video

CONVERSATION = [
    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}
]
RENDERED = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Describe the video.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return qt.build_qwen_tokenizer()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qt.tiny_qwen_path(tmp_path_factory.mktemp("cache"))


def test_config_geometry(tokenizer) -> None:
    config = qt.tiny_qwen_config(tokenizer)
    vision: Any = config.vision_config
    text: Any = config.text_config
    assert vision.depth == 32 and list(vision.fullatt_block_indexes) == [7, 15, 23, 31]
    assert (vision.window_size, vision.patch_size, vision.spatial_merge_size) == (112, 14, 2)
    assert (vision.temporal_patch_size, vision.tokens_per_second) == (2, 2)
    assert (vision.hidden_size, vision.num_heads, vision.intermediate_size) == (32, 2, 64)
    assert vision.out_hidden_size == 64
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (24, 64, 128)
    assert (text.num_attention_heads, text.num_key_value_heads) == (4, 2)
    assert text.vocab_size % 64 == 0 and text.vocab_size >= len(tokenizer)
    section = text.rope_parameters["mrope_section"]
    assert section == [2, 3, 3] and sum(section) == text.hidden_size // text.num_attention_heads // 2
    assert config.tie_word_embeddings is False


def test_special_tokens_are_single_ids(tokenizer) -> None:
    ids = {}
    for token in qt.QWEN_SPECIAL_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        assert len(encoded) == 1, token
        ids[token] = encoded[0]
    assert len(set(ids.values())) == len(ids)
    config = qt.tiny_qwen_config(tokenizer)
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert tokenizer.eos_token_id == ids["<|im_end|>"]
    assert tokenizer.pad_token_id == ids["<|endoftext|>"]
    text = "Describe the video: a zebra 🦓 crosses!"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_chat_template_renders_like_qwen25_vl_instruct(tokenizer) -> None:
    assert tokenizer.chat_template == qt.QWEN_VL_CHAT_TEMPLATE
    render = tokenizer.apply_chat_template
    assert render(CONVERSATION, tokenize=False, add_generation_prompt=True) == RENDERED
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert render(system, tokenize=False) == expected
    numbered = render(CONVERSATION, tokenize=False, add_vision_id=True)
    assert "<|im_start|>user\nVideo 1: <|vision_start|><|video_pad|><|vision_end|>Describe" in numbered
    image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    assert "<|vision_start|><|image_pad|><|vision_end|>What?<|im_end|>" in render(image, tokenize=False)


def test_builds_are_identical(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    qt.build_tiny_qwen(tmp_path / "a")
    qt.build_tiny_qwen(tmp_path / "b")
    first = load_file(str(tmp_path / "a" / "model.safetensors"))
    second = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert first.keys() == second.keys() and len(first) > 600
    assert all(torch.equal(first[name], second[name]) for name in first)
    for name in ("config.json", "tokenizer.json", "generation_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_cached_once(folder: Path) -> None:
    assert folder.name == "tiny-qwen2.5-vl-v1"
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert qt.tiny_qwen_path(folder.parent) == folder
    assert weights.stat().st_mtime_ns == stamp


def test_stock_forward_with_a_video(folder: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig, Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generation.pad_token_id == tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, 60, 90, 3), dtype=torch.uint8, generator=generator)
    inputs = preprocess_video(frames, fps=2.0, min_pixels=28 * 28 * 4)
    assert inputs.grid == (2, 4, 6)
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    text = text.replace(qt.VIDEO_PAD, qt.VIDEO_PAD * inputs.num_video_tokens)  # t·gh·gw/4 = 12
    input_ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    video_id = model.config.video_token_id
    assert int((input_ids == video_id).sum()) == 12
    video = hf_video_kwargs(inputs)
    with torch.no_grad():
        hf = model(input_ids=input_ids, mm_token_type_ids=(input_ids == video_id).int() * 2, **video)
        positions, _ = mrope_positions(
            input_ids[0], video_token_id=video_id, token_coords=grid_coords(*inputs.merged_grid),
            time_interval=time_interval(inputs.second_per_grid, model.config.vision_config.tokens_per_second),
        )  # fmt: skip
        ours = model(input_ids=input_ids, position_ids=positions[:, None], **video)
    assert hf.logits.shape == (1, input_ids.shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(hf.logits).all()
    torch.testing.assert_close(ours.logits, hf.logits, rtol=0, atol=1e-5)

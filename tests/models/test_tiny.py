"""The embedded `tiny` model: geometry, tokenizer, cache behaviour, determinism, stock forward."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

from earlytom.models import tiny
from earlytom.models.prompt import build_input_ids, render_video_prompt


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.tiny_path(tmp_path_factory.mktemp("cache"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_config_geometry(tokenizer) -> None:
    config = tiny.tiny_config(tokenizer)
    vision: Any = config.vision_config
    text: Any = config.text_config
    assert vision.image_size // vision.patch_size == 27  # 27×27 = 729 tokens per frame
    assert vision.num_hidden_layers == 26
    assert vision.vision_use_head is False
    assert text.num_hidden_layers == 24
    assert text.vocab_size % 64 == 0 and text.vocab_size >= len(tokenizer)
    assert text.rope_parameters["rope_theta"] == 1e6
    assert config.vision_feature_layer == -1
    assert config.vision_feature_select_strategy == "full"
    assert config.tie_word_embeddings is False


def test_special_tokens_are_single_ids(tokenizer) -> None:
    ids = {}
    for token in tiny.SPECIAL_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        assert len(encoded) == 1, token
        ids[token] = encoded[0]
    assert len(set(ids.values())) == len(ids)
    config = tiny.tiny_config(tokenizer)
    assert config.video_token_id == ids["<video>"]
    assert config.image_token_id == ids["<image>"]
    assert tokenizer.eos_token_id == ids["<|im_end|>"]
    assert tokenizer.pad_token_id == ids["<|endoftext|>"]
    # plain text round-trips through the byte-level BPE
    text = "Describe the video: a zebra 🦓 crosses!"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_chat_template_renders_one_video(tokenizer) -> None:
    text = render_video_prompt(tokenizer, "Describe the video.")
    assert text.count("<video>") == 1
    assert text.startswith("<|im_start|>user")
    assert text.endswith("<|im_start|>assistant\n")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tiny.default_cache_dir() == tmp_path / "earlytom"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tiny.default_cache_dir() == Path.home() / ".cache" / "earlytom"


def test_tiny_path_builds_once_and_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny.tiny_path(tmp_path)
    assert path == tmp_path / f"tiny-v{tiny.TINY_VERSION}"
    weights = path / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert tiny.tiny_path(tmp_path) == path
    assert weights.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp folder left behind
    assert capsys.readouterr().out == ""


def test_tiny_path_lost_race_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / f"tiny-v{tiny.TINY_VERSION}"
    real_build = tiny.build_tiny

    def build_while_another_process_wins(out_dir: Path) -> None:
        real_build(out_dir)
        final.mkdir()
        (final / "winner").write_text("x")

    monkeypatch.setattr(tiny, "build_tiny", build_while_another_process_wins)
    assert tiny.tiny_path(tmp_path) == final
    assert (final / "winner").exists()
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_build_is_deterministic(tmp_path: Path) -> None:
    rng = torch.get_rng_state()
    tiny.build_tiny(tmp_path / "a")
    tiny.build_tiny(tmp_path / "b")
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    for name in ("model.safetensors", "tokenizer.json"):
        assert _sha256(tmp_path / "a" / name) == _sha256(tmp_path / "b" / name), name


def test_loads_and_stock_forward_with_video(tiny_dir: Path) -> None:
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert tokenizer.convert_tokens_to_ids("<video>") == model.config.video_token_id
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")

    frames = 2
    num_video_tokens = frames * 196 + 1  # 27×27 pooled to 14×14 per frame, plus one newline
    input_ids = build_input_ids(
        tokenizer, "hi", num_video_tokens=num_video_tokens, video_token_id=model.config.video_token_id
    )
    assert int((input_ids == model.config.video_token_id).sum()) == num_video_tokens
    pixels = torch.randn(1, frames, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=input_ids, pixel_values_videos=pixels).logits
    assert logits.shape == (1, input_ids.shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()

"""LLaVA-NeXT (lmms-lab) layout: tiny written in that layout loads back into the same HF model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models
from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

from earlytom.errors import ModelError
from earlytom.models.llava_next import (
    LLAVA_NEXT_QWEN_TEMPLATE,
    is_llava_next,
    llava_next_config,
    llava_next_state_key,
    llava_next_vision_name,
    load_llava_next,
    placeholder_ids,
    write_llava_next,
)
from earlytom.models.prompt import LLAVA_OV_CHAT_TEMPLATE, build_input_ids, render_video_prompt
from earlytom.models.tiny import tiny_path
from earlytom.models.vision import build_vision_side, read_vision_tensors

VISION = "model.vision_tower.vision_tower.vision_model."


@pytest.fixture(scope="module")
def tiny_hf(tiny_cache: Path) -> Path:
    return tiny_path(tiny_cache)


@pytest.fixture(scope="module")
def next_dir(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny in the LLaVA-NeXT layout, sharded in two files with an index."""
    out = tmp_path_factory.mktemp("llava-next") / "tiny-next"
    write_llava_next(tiny_hf, out, shards=2)
    return out


@pytest.fixture(scope="module")
def stock(tiny_hf: Path):
    return LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_hf, dtype=torch.float32).eval()


def _variant(source: Path, out: Path, **changes) -> Path:
    """`source` with config.json changed (None deletes a key); the other files are linked."""
    out.mkdir()
    for entry in source.iterdir():
        if entry.name != "config.json":
            os.symlink(entry, out / entry.name)
    flat = json.loads((source / "config.json").read_text())
    flat |= changes
    flat = {key: value for key, value in flat.items() if value is not None}
    (out / "config.json").write_text(json.dumps(flat))
    return out


def _keys(folder: Path) -> list[str]:
    keys: list[str] = []
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            keys += list(handle.keys())
    return keys


def test_written_layout_is_lmms_lab(next_dir: Path) -> None:
    flat = json.loads((next_dir / "config.json").read_text())
    assert flat["architectures"] == ["LlavaQwenForCausalLM"]
    assert "text_config" not in flat and "vision_config" not in flat
    assert flat["mm_vision_tower"] == "google/siglip-so400m-patch14-384"
    assert (flat["mm_projector_type"], flat["mm_vision_select_layer"]) == ("mlp2x_gelu", -2)
    keys = _keys(next_dir)
    assert {re.sub(r"\.\d+\.", ".N.", key).split(".N.")[0] for key in keys} >= {
        "model.layers",
        f"{VISION}encoder.layers",
        "model.mm_projector",
    }
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.image_newline"} <= set(
        keys
    )
    assert not [key for key in keys if key.startswith(("language_model.", "model.language_model."))]
    layers = {
        int(m.group(1))
        for key in keys
        if (m := re.match(rf"{re.escape(VISION)}encoder\.layers\.(\d+)\.", key))
    }
    assert layers == set(range(26))  # SigLIP's 27th layer is not saved
    assert json.loads((next_dir / "model.safetensors.index.json").read_text())["weight_map"].keys() == set(
        keys
    )


def test_loads_the_same_model(next_dir: Path, stock) -> None:
    model, tokenizer = load_llava_next(next_dir, dtype=torch.float32)
    ours, theirs = model.state_dict(), stock.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    assert (model.config.image_token_index, model.config.video_token_index) == (3, 4)  # tiny's own tokens
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.config.mm_spatial_pool_mode == "bilinear" and model.config.mm_newline_position == "one_token"

    frames, grid = 2, 14  # (B, T, 3, 384, 384); T·P + 1 video tokens (one newline after the video)
    video = torch.randn(1, frames, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    ids = build_input_ids(tokenizer, "Describe the video.", num_video_tokens=frames * grid * grid + 1,
                          video_token_id=model.config.video_token_index)  # fmt: skip
    with torch.no_grad():
        ours_logits = model(input_ids=ids, pixel_values_videos=video).logits
        theirs_logits = stock(input_ids=ids, pixel_values_videos=video).logits
    torch.testing.assert_close(ours_logits, theirs_logits, rtol=0, atol=1e-5)


def test_prompt_matches_qwen_1_5(next_dir: Path) -> None:
    """One user turn renders as LLaVA-NeXT's `qwen_1_5` conversation (llava/conversation.py, CHATML
    style: system + sep + "\\n", then role + "\\n" + message + sep + "\\n", then the open assistant
    role + "\\n"), with lmms-eval's message "<image>\\n" + question; only the placeholder differs."""
    _, tokenizer = load_llava_next(next_dir, dtype=torch.float32)
    assert tokenizer.chat_template == LLAVA_NEXT_QWEN_TEMPLATE  # the written tokenizer has none
    question = "What is the person doing?"
    sep = "<|im_end|>"
    qwen_1_5 = "<|im_start|>system\nYou are a helpful assistant." + sep + "\n"
    qwen_1_5 += "<|im_start|>user" + "\n" + "<image>\n" + question + sep + "\n"
    qwen_1_5 += "<|im_start|>assistant" + "\n"
    assert render_video_prompt(tokenizer, question).replace("<video>", "<image>") == qwen_1_5
    tokenizer.chat_template = LLAVA_OV_CHAT_TEMPLATE  # why the llava-hf template is not used here:
    assert render_video_prompt(tokenizer, question).replace("<video>", "<image>") != qwen_1_5


def test_is_llava_next(next_dir: Path, tiny_hf: Path, tmp_path: Path) -> None:
    assert is_llava_next(next_dir)
    assert not is_llava_next(tiny_hf)  # llava-hf layout
    assert not is_llava_next(tmp_path)  # no config.json
    by_type = _variant(next_dir, tmp_path / "by-type", architectures=None, model_type="llava_qwen")
    assert is_llava_next(by_type)
    assert not is_llava_next(_variant(next_dir, tmp_path / "no-tower", architectures=None,
                                      model_type="llava_qwen", mm_vision_tower=None))  # fmt: skip


def test_vision_names_cover_the_vision_side(next_dir: Path, tiny_hf: Path) -> None:
    renamed = {}
    for file in sorted(next_dir.glob("*.safetensors")):
        for key, tensor in load_file(str(file)).items():
            name = llava_next_vision_name(key)
            if name is not None:
                renamed[name] = tensor
    side = build_vision_side(LlavaOnevisionForConditionalGeneration.config_class.from_pretrained(tiny_hf))
    assert renamed.keys() == {name for name, _ in side.named_parameters()}
    reference = read_vision_tensors(tiny_hf)  # the llava-hf layout, as the exporter reads it
    assert renamed.keys() == reference.keys()
    assert all(torch.equal(renamed[name], reference[name]) for name in reference)
    assert llava_next_vision_name("model.layers.0.mlp.up_proj.weight") is None
    assert llava_next_vision_name(f"{VISION}post_layernorm.weight") is None


def test_state_key_table() -> None:
    assert llava_next_state_key("model.layers.3.self_attn.q_proj.bias") == (
        "model.language_model.layers.3.self_attn.q_proj.bias"
    )
    assert llava_next_state_key("model.embed_tokens.weight") == "model.language_model.embed_tokens.weight"
    assert llava_next_state_key("model.norm.weight") == "model.language_model.norm.weight"
    assert llava_next_state_key("lm_head.weight") == "lm_head.weight"
    assert llava_next_state_key(f"{VISION}encoder.layers.25.mlp.fc1.weight") == (
        "model.vision_tower.encoder.layers.25.mlp.fc1.weight"
    )
    assert llava_next_state_key(f"{VISION}post_layernorm.bias") == "model.vision_tower.post_layernorm.bias"
    assert (
        llava_next_state_key("model.mm_projector.0.weight") == "model.multi_modal_projector.linear_1.weight"
    )
    assert llava_next_state_key("model.mm_projector.2.bias") == "model.multi_modal_projector.linear_2.bias"
    assert llava_next_state_key("model.image_newline") == "model.image_newline"
    harmless = (
        f"{VISION}encoder.layers.26.mlp.fc1.weight",  # SigLIP's 27th layer: deleted before use
        f"{VISION}head.probe",  # SigLIP's head: replaced by Identity
        f"{VISION}embeddings.position_ids",
        "model.layers.0.self_attn.rotary_emb.inv_freq",
    )
    for key in harmless:
        assert llava_next_state_key(key) is None
    for refused in ("model.faster_token", "model.mm_projector.4.weight", "model.image_newline_extra"):
        with pytest.raises(ModelError, match=re.escape(refused)):
            llava_next_state_key(refused)


def _rewrite(next_dir: Path, out: Path, edit, **changes) -> Path:
    """`next_dir` with its tensors in one file edited by `edit` and config.json changed."""
    out.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.symlink(next_dir / name, out / name)
    flat = json.loads((next_dir / "config.json").read_text()) | changes
    (out / "config.json").write_text(json.dumps(flat))
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(next_dir.glob("*.safetensors")):
        tensors |= load_file(str(file))
    edit(tensors)
    save_file(tensors, str(out / "model.safetensors"))
    return out


def test_tied_checkpoint_and_dropped_tensors(next_dir: Path, tmp_path: Path) -> None:
    """A tied checkpoint (the 0.5B's) has no lm_head; SigLIP's 27th layer and head are dropped."""

    def edit(tensors: dict[str, torch.Tensor]) -> None:
        del tensors["lm_head.weight"]
        tensors[f"{VISION}encoder.layers.26.mlp.fc1.bias"] = torch.zeros(3)
        tensors[f"{VISION}head.probe"] = torch.zeros(1, 1, 3)

    folder = _rewrite(next_dir, tmp_path / "tied", edit, tie_word_embeddings=True)
    model, _ = load_llava_next(folder, dtype=torch.float32)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert torch.equal(
        model.lm_head.weight, load_file(str(folder / "model.safetensors"))["model.embed_tokens.weight"]
    )


def test_extra_tensor_is_refused(next_dir: Path, tmp_path: Path) -> None:
    def edit(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.layers.24.mlp.up_proj.weight"] = tensors["model.layers.23.mlp.up_proj.weight"].clone()

    folder = _rewrite(next_dir, tmp_path / "extra", edit)
    with pytest.raises(ModelError, match=r"'model\.layers\.24\.mlp\.up_proj\.weight'.*no such tensor"):
        load_llava_next(folder, dtype=torch.float32)


def test_missing_tensor_is_named(next_dir: Path, tmp_path: Path) -> None:
    broken = _rewrite(
        next_dir, tmp_path / "broken", lambda tensors: tensors.pop("model.layers.7.mlp.down_proj.weight")
    )
    with pytest.raises(
        ModelError, match=r"'[^']*broken' lacks tensor 'model\.layers\.7\.mlp\.down_proj\.weight'"
    ):
        load_llava_next(broken, dtype=torch.float32)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mm_vision_tower": "openai/clip-vit-large-patch14-336"}, "openai/clip-vit-large-patch14-336"),
        ({"mm_newline_position": "grid"}, "mm_newline_position='grid'.*one image_newline after the video"),
        ({"mm_spatial_pool_mode": "max"}, "mm_spatial_pool_mode='max'"),
        ({"mm_spatial_pool_stride": 4}, "mm_spatial_pool_stride=4"),
        ({"mm_vision_select_layer": -1}, "mm_vision_select_layer=-1"),
        ({"mm_projector_type": "linear"}, "mm_projector_type='linear'"),
        ({"mm_patch_merge_type": "flat"}, "mm_patch_merge_type='flat'"),
    ],
)
def test_refused_settings(next_dir: Path, tmp_path: Path, changes: dict, message: str) -> None:
    folder = _variant(next_dir, tmp_path / "variant", **changes)
    with pytest.raises(ModelError, match=message) as info:
        llava_next_config(folder)
    assert "\n" not in str(info.value)


def test_average_pooling_is_carried(next_dir: Path, tmp_path: Path) -> None:
    config = llava_next_config(_variant(next_dir, tmp_path / "average", mm_spatial_pool_mode="average"))
    assert (config.mm_spatial_pool_mode, config.mm_spatial_pool_stride) == ("average", 2)
    absent = llava_next_config(_variant(next_dir, tmp_path / "absent", mm_spatial_pool_mode=None,
                                        mm_newline_position=None, mm_spatial_pool_stride=None))  # fmt: skip
    assert (absent.mm_spatial_pool_mode, absent.mm_newline_position) == ("bilinear", "one_token")
    grid = _variant(next_dir, tmp_path / "grid", mm_newline_position="grid")
    assert (
        llava_next_config(grid, overrides={"mm_newline_position": "one_token"}).mm_newline_position
        == "one_token"
    )


def test_placeholders_added_when_missing() -> None:
    """A Qwen2-like tokenizer without `<image>`/`<video>` gets them as the next two ids."""
    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "hello": 3, "[UNK]": 4}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    )
    assert placeholder_ids(tokenizer, 64) == (5, 6)
    assert tokenizer.encode("<video>", add_special_tokens=False) == [6]
    assert placeholder_ids(tokenizer, 64) == (5, 6)  # idempotent
    with pytest.raises(ModelError, match="do not fit the 6-row embedding"):
        placeholder_ids(tokenizer, 6)

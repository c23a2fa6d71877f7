"""The vision side alone: loaded without the language model, same tensors and pooling as HF."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from earlytom.models.architectures import architecture_config
from earlytom.models.vision import VisionSide, build_vision_side, load_vision_side, pool_grid


def test_pool_grid_equals_hf_apply_pooling(tiny_loaded) -> None:
    features = torch.randn(3, 729, 64)
    torch.testing.assert_close(pool_grid(features, 27), tiny_loaded.model.model.apply_pooling(features))


def test_vision_only_load_equals_the_full_model(tiny_cache: Path, tiny_loaded) -> None:
    loaded = load_vision_side("tiny", cache_dir=tiny_cache)
    vision, source = loaded.vision, loaded.source
    full = VisionSide.from_llava(tiny_loaded.model.model).state_dict()
    assert vision.state_dict().keys() == full.keys()
    for name, tensor in vision.state_dict().items():
        assert torch.equal(tensor, full[name]), name
    assert source.endswith("tiny-v1")


def test_llava_hf_checkpoint_layout_loads(tiny_cache: Path, tiny_loaded, tmp_path: Path) -> None:
    """The published llava-hf files nest SigLIP under `vision_model.`; both layouts load alike."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    original = tiny_cache / "tiny-v1"
    (folder / "config.json").write_text((original / "config.json").read_text())
    state = load_file(original / "model.safetensors")
    legacy = "vision_tower.vision_model."
    renamed = {key.replace("vision_tower.", legacy, 1) if key.startswith("vision_tower.") else key: t
               for key, t in state.items()}  # fmt: skip
    save_file(renamed, folder / "model.safetensors")
    vision = load_vision_side(str(folder)).vision
    full = VisionSide.from_llava(tiny_loaded.model.model).state_dict()
    assert all(torch.equal(t, full[name]) for name, t in vision.state_dict().items())


def test_7b_vision_side_has_no_language_model() -> None:
    with torch.device("meta"):
        vision = build_vision_side(architecture_config("llava-ov-7b"))
    params = sum(p.numel() for p in vision.parameters())
    siglip_and_projector = 400_000_000 < params < 450_000_000  # so400m (~413M incl. projector), no 7B LLM
    assert siglip_and_projector, params
    assert vision.num_layers == 26 and vision.image_newline.shape == (3584,)
    assert vision.pooled_tokens_per_frame == 196 and vision.tokens_per_frame == 729

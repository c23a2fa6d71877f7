from __future__ import annotations

import pytest

from earlytom.errors import ModelError
from earlytom.models.registry import MODELS, architecture_config


@pytest.mark.parametrize(
    ("name", "text_layers", "width", "vocab"),
    [("llava-ov-0.5b", 24, 896, 151936), ("llava-ov-7b", 28, 3584, 152128)],
)
def test_published_architectures(name: str, text_layers: int, width: int, vocab: int) -> None:
    config = architecture_config(name)
    vision = config.vision_config
    assert (vision.image_size // vision.patch_size) ** 2 == 729
    assert (vision.num_hidden_layers, vision.hidden_size) == (26, 1152)
    assert config.vision_feature_layer == -1 and config.vision_feature_select_strategy == "full"
    text = config.text_config
    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (text_layers, width, vocab)
    assert config.video_token_id == 151647
    assert MODELS[name].hub_id.startswith("llava-hf/llava-onevision-qwen2-")


def test_random_weights_needs_a_known_architecture() -> None:
    with pytest.raises(ModelError, match="known architecture"):
        architecture_config("tiny")


def test_random_weights_are_seeded_and_leave_the_callers_rng_alone(tiny_loaded) -> None:
    """Repeated timing runs must merge the same frames, so a random build is the same every time.

    The seeded build `--random-weights` uses for the 0.5b/7b architectures, on tiny's config (the
    real architectures build the same way, only slower; tests/cli runs the 0.5b one end to end).
    """
    import torch

    from earlytom.models.loading import random_model

    config, cpu = tiny_loaded.model.config, torch.device("cpu")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = random_model(config, cpu, torch.float32)
    assert torch.equal(torch.rand(3), expected_next)
    second = random_model(config, cpu, torch.float32)
    pairs = zip(first.named_parameters(), second.named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        assert torch.equal(a, b), name
    differs = any(
        not torch.equal(a, b) for a, b in zip(first.parameters(), tiny_loaded.model.parameters(), strict=True)
    )
    assert differs  # a fresh draw, not the tiny checkpoint's weights

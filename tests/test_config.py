from __future__ import annotations

import dataclasses

import pytest

from earlytom import EarlyTomConfig, preset
from earlytom.config import PRESETS
from earlytom.errors import ConfigError


def test_default_is_videomme_ten_percent() -> None:
    assert EarlyTomConfig() == preset("videomme", 0.10)
    config = EarlyTomConfig()
    assert (config.tau, config.prune_layers, config.max_window, config.ema) == (0.3, (10, 21, 23), 6, 0.9)
    assert config.drop_last_middle and config.enabled


def test_presets_table() -> None:
    assert preset("mvbench", 0.15).tau == 0.8 and preset("mvbench", 0.15).prune_layers == (6, 14, 20)
    assert preset("longvideobench", 0.25).prune_layers == (4, 14, 24)
    assert preset("egoschema", 0.25).tau == 0.7
    assert all(sorted(table) == [0.10, 0.15, 0.20, 0.25] for table in PRESETS.values())
    assert preset("videomme", 0.2, drop_last_middle=False).drop_last_middle is False


def test_frozen_and_list_layers() -> None:
    config = EarlyTomConfig(prune_layers=[4, 8])  # type: ignore[arg-type]
    assert config.prune_layers == (4, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tau = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retention": 0.0}, r"retention=0.0 is out of range: must be in \(0, 1\]"),
        ({"retention": 1.5}, r"retention=1.5 is out of range"),
        ({"retention": float("nan")}, r"retention=nan"),
        ({"prune_layers": (21, 10)}, r"prune_layers=\[21, 10\] must be strictly increasing"),
        ({"prune_layers": (10, 10)}, r"strictly increasing"),
        ({"prune_layers": ()}, r"empty"),
        ({"prune_layers": (-1, 3)}, r"negative"),
        ({"tau": 1.5}, r"tau=1.5 is out of range: must be in \[-1, 1\]"),
        ({"ema": 0.0}, r"ema=0.0 is out of range"),
        ({"max_window": 1}, r"max_window=1"),
        ({"inner_ratio": 1.0}, r"inner_ratio=1.0"),
        ({"inner_layer": 0}, r"inner_layer=0"),
    ],
)
def test_invalid_values_name_field_value_and_range(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EarlyTomConfig(**changes)


def test_model_bounds() -> None:
    EarlyTomConfig().check_model(vision_layers=26, language_layers=28)
    with pytest.raises(ConfigError, match=r"layer 26, but the vision encoder has 26 layers \(0..25\)"):
        EarlyTomConfig(prune_layers=(10, 26)).check_model(vision_layers=26, language_layers=28)
    with pytest.raises(ConfigError, match="inner_layer=18"):
        EarlyTomConfig().check_model(vision_layers=26, language_layers=12)
    EarlyTomConfig(enabled=False, prune_layers=(40,)).check_model(vision_layers=26, language_layers=12)


def test_preset_errors() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'foo'"):
        preset("foo", 0.1)
    with pytest.raises(ConfigError, match=r"no setting for retention=0.3 \(it has 0.10, 0.15, 0.20, 0.25\)"):
        preset("videomme", 0.3)
    with pytest.raises(ConfigError, match="out of range"):
        preset("videomme", 0.0)

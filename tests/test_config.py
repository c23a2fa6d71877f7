from __future__ import annotations

import dataclasses
import hashlib
import json

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


def test_preset_is_the_one_constructor() -> None:
    import earlytom.config

    assert not hasattr(earlytom.config, "build_config")
    assert preset() == EarlyTomConfig()


@pytest.mark.parametrize("retention", [0.01, 0.12, 0.3, 0.5, 1.0])
def test_tau_and_prune_layers_together_work_for_any_retention(retention: float) -> None:
    config = preset("mvbench", retention, tau=0.55, prune_layers=(4, 12), max_window=4)
    assert (config.retention, config.tau) == (retention, 0.55)
    assert (config.prune_layers, config.max_window) == ((4, 12), 4)
    with pytest.raises(ConfigError, match=r"retention=0\.0 is out of range"):
        preset("mvbench", 0.0, tau=0.55, prune_layers=(4, 12))


def test_tau_or_prune_layers_alone_replaces_the_preset_value() -> None:
    assert preset("mvbench", 0.15, tau=0.1) == preset("mvbench", 0.15).replace(tau=0.1)
    assert preset("mvbench", 0.15, prune_layers=[2, 5]).prune_layers == (2, 5)
    assert preset("mvbench", 0.15, prune_layers=[2, 5]).tau == 0.8
    with pytest.raises(ConfigError, match=r"no setting for retention=0\.3"):
        preset("mvbench", 0.3, tau=0.5)  # the preset's prune layers are still needed
    with pytest.raises(ConfigError, match="unknown preset 'foo'"):
        preset("foo", 0.3, tau=0.5, prune_layers=(4, 8))


def test_from_dict_reads_what_to_dict_writes() -> None:
    from earlytom.config import _JSON_TYPES

    assert list(_JSON_TYPES) == [f.name for f in dataclasses.fields(EarlyTomConfig)]
    for config in (EarlyTomConfig(), preset("longvideobench", 0.25, drop_last_middle=False, enabled=False)):
        assert EarlyTomConfig.from_dict(config.to_dict()) == config
    assert EarlyTomConfig.from_dict(json.loads(json.dumps(EarlyTomConfig().to_dict()))) == EarlyTomConfig()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "fast"}, r"config has unknown field 'mode' \(fields: retention, prune_layers, tau"),
        ({"tau": None}, r"config field 'tau' must be a number, got None"),
        ({"max_window": 6.0}, r"config field 'max_window' must be an integer, got 6.0"),
        ({"max_window": True}, r"config field 'max_window'"),
        ({"drop_last_middle": 1}, r"config field 'drop_last_middle' must be a boolean, got 1"),
        ({"prune_layers": [10, 21.5]}, r"config field 'prune_layers' must be a list of integers"),
        ({"prune_layers": "10,21"}, r"config field 'prune_layers'"),
        ({"retention": "0.1"}, r"config field 'retention' must be a number, got '0.1'"),
        ({"retention": 2.0}, r"retention=2.0 is out of range"),
    ],
)
def test_from_dict_errors_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EarlyTomConfig.from_dict(EarlyTomConfig().to_dict() | change)


def test_from_dict_refuses_missing_fields_and_non_objects() -> None:
    data = EarlyTomConfig().to_dict()
    del data["inner_ratio"]
    with pytest.raises(ConfigError, match="config is missing field 'inner_ratio'"):
        EarlyTomConfig.from_dict(data)
    with pytest.raises(ConfigError, match="config must be a JSON object of fields, got list"):
        EarlyTomConfig.from_dict([])  # type: ignore[arg-type]


# sha256 of the default config's canonical JSON, as every artifact exported so far records it.
DEFAULT_CONFIG_HASH = "91e9fcda57c65e5df93d4fa8845842251227ec470e112bac6bd8c74e33113ee2"


def test_config_hash_is_stable() -> None:
    assert EarlyTomConfig().config_hash() == DEFAULT_CONFIG_HASH
    canonical = json.dumps(EarlyTomConfig().to_dict(), sort_keys=True).encode()
    assert hashlib.sha256(canonical).hexdigest() == DEFAULT_CONFIG_HASH
    assert EarlyTomConfig(prune_layers=[10, 21, 23]).config_hash() == DEFAULT_CONFIG_HASH  # type: ignore[arg-type]
    assert preset("videomme", 0.1, max_window=5).config_hash() != DEFAULT_CONFIG_HASH

"""The EarlyTom setting of a vLLM server, from the `earlytom` key of `--hf-overrides`.

The keys are the CLI's flag names with underscores (`preset`, `retention`, `tau`, `prune_layers`,
`max_window`, `keep_last_middle`, `budget`, `inner_merge`), validated by the same constructor
(`preset`), so a bad value fails the server's start-up with the message `earlytom run` prints.
No vLLM import here: the rules are testable without vLLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from earlytom.config import DEFAULT_RETENTION, DEFAULT_TASK, EarlyTomConfig, preset
from earlytom.errors import ConfigError

OVERRIDES_KEY = "earlytom"
SETTING_KEYS = ("preset", "retention", "tau", "prune_layers", "max_window", "keep_last_middle", "budget")
STAGE_III_KEY = "inner_merge"


def serving_config(hf_config: Any) -> EarlyTomConfig | None:
    """The setting the video route compresses with; None when the server has no `earlytom` key
    (then videos take vLLM's stock path and only the embeddings route is EarlyTom's)."""
    raw = getattr(hf_config, OVERRIDES_KEY, None)
    if raw is None:
        return None
    return parse_setting(raw)


def parse_setting(raw: Any) -> EarlyTomConfig:
    """`{"preset": "videomme", "retention": 0.1, ...}` -> the exact-budget EarlyTomConfig."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"hf_overrides '{OVERRIDES_KEY}' must be an object such as "
            f'{{"preset": "videomme", "retention": 0.1}}, got {raw!r}'
        )
    if raw.get(STAGE_III_KEY):
        raise ConfigError(
            f"hf_overrides '{OVERRIDES_KEY}.{STAGE_III_KEY}': Stage III cannot run under vLLM, which keeps "
            "one KV length per request for all decoder layers; drop the key (Stages I and II still run)"
        )
    unknown = sorted(set(raw) - {*SETTING_KEYS, STAGE_III_KEY})
    if unknown:
        raise ConfigError(
            f"hf_overrides '{OVERRIDES_KEY}' has unknown key '{unknown[0]}' (keys: {', '.join(SETTING_KEYS)})"
        )
    budget = raw.get("budget", "exact")
    if budget != "exact":
        raise ConfigError(
            f"hf_overrides '{OVERRIDES_KEY}.budget'={budget!r}: vLLM sizes a video's placeholders before "
            "the encoder runs, so the video route needs budget 'exact'; for the released budget send "
            "the visual span through the embeddings route"
        )
    prune_layers = raw.get("prune_layers")
    return preset(
        raw.get("preset", DEFAULT_TASK),
        raw.get("retention", DEFAULT_RETENTION),
        tau=raw.get("tau"),
        prune_layers=None if prune_layers is None else _layers(prune_layers),
        max_window=raw.get("max_window", EarlyTomConfig().max_window),
        drop_last_middle=not raw.get("keep_last_middle", False),
        budget="exact",
    )


def _layers(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [part for part in value.replace(" ", "").split(",") if part]
    try:
        return tuple(int(layer) for layer in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"hf_overrides '{OVERRIDES_KEY}.prune_layers'={value!r}: give layer indices, e.g. [10, 21, 23]"
        ) from None

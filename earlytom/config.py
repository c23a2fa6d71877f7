"""EarlyTomConfig and the authors' presets (DESIGN §3)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from earlytom.errors import ConfigError

# (task, retention) -> (tau, prune_layers), as tuned per benchmark by the authors.
PRESETS: dict[str, dict[float, tuple[float, tuple[int, ...]]]] = {
    "videomme": {
        0.10: (0.3, (10, 21, 23)),
        0.15: (0.4, (8, 21, 23)),
        0.20: (0.5, (8, 21, 23)),
        0.25: (0.7, (10, 21, 23)),
    },
    "mvbench": {
        0.10: (0.65, (8, 14, 20)),
        0.15: (0.8, (6, 14, 20)),
        0.20: (0.8, (6, 14, 20)),
        0.25: (0.8, (6, 14, 20)),
    },
    "longvideobench": {
        0.10: (0.3, (10, 21, 23)),
        0.15: (0.5, (10, 21, 23)),
        0.20: (0.6, (10, 21, 23)),
        0.25: (0.8, (4, 14, 24)),
    },
    "egoschema": {
        0.10: (0.3, (10, 21, 23)),
        0.15: (0.5, (10, 21, 23)),
        0.20: (0.6, (10, 21, 23)),
        0.25: (0.7, (10, 21, 23)),
    },
}
DEFAULT_TASK = "videomme"
# LLaVA-Video-7B, from the authors' scripts (DESIGN §10): videomme and longvideobench differ at 25 %.
LLAVA_VIDEO_PRESETS: dict[str, dict[float, tuple[float, tuple[int, ...]]]] = {
    "videomme": {
        0.10: (0.3, (10, 21, 23)),
        0.15: (0.4, (8, 21, 23)),
        0.20: (0.5, (8, 21, 23)),
        0.25: (0.6, (10, 21, 23)),
    },
    "mvbench": PRESETS["mvbench"],
    "longvideobench": PRESETS["longvideobench"] | {0.25: (0.8, (6, 21, 23))},
    "egoschema": PRESETS["egoschema"],
}
# Qwen2.5-VL-7B: the released code has none, so this is our choice (README, "Model families"). Prune
# layers 7/15/23 are full-attention blocks: the last one scores received attention over the whole
# frame, which a window block cannot; 15 and 23 are a third-party port's, 7 starts merging early
# as the LLaVA presets do. tau rises with retention as in every authors' table, 0.6 at 15 % (the port's).
QWEN_VL_PRESETS: dict[str, dict[float, tuple[float, tuple[int, ...]]]] = {
    "default": {
        0.10: (0.5, (7, 15, 23)),
        0.15: (0.6, (7, 15, 23)),
        0.20: (0.7, (7, 15, 23)),
        0.25: (0.8, (7, 15, 23)),
    },
}
# Each model family's preset table and the task its commands default to.
FAMILY_PRESETS: dict[str, dict[str, dict[float, tuple[float, tuple[int, ...]]]]] = {
    "llava-onevision": PRESETS,
    "llava-video": LLAVA_VIDEO_PRESETS,
    "qwen2.5-vl": QWEN_VL_PRESETS,
}
DEFAULT_TASKS = {"llava-onevision": DEFAULT_TASK, "llava-video": DEFAULT_TASK, "qwen2.5-vl": "default"}
TASKS = tuple(dict.fromkeys(task for table in FAMILY_PRESETS.values() for task in table))
# Stage II budgets: the released one, and the exact-count one (N a function of r, B and P alone;
# surplus trimmed or shortfall filled by score, and Stage I never merges below ceil(N/P) frames).
BUDGETS = ("faithful", "exact")
DEFAULT_RETENTION = 0.10


@dataclass(frozen=True)
class EarlyTomConfig:
    """All settings of the algorithm. Defaults are the `videomme` preset at 10 % retention.

    retention: fraction of the B·P pooled visual tokens kept (0, 1].
    prune_layers: vision layers after which frames are merged, strictly increasing.
    tau: segmentation threshold on the smoothed frame similarity.
    ema: smoothing factor α of the streaming segmentation.
    max_window: a segment is closed when it would reach this many frames.
    drop_last_middle: reproduce the released code, which drops the last middle frame when the
        merge walk ends on it; False keeps that frame (the corrected variant).
    inner_layer, inner_ratio: Stage III (inner-LLM merge) decoder layer and fraction dropped.
    enabled: False runs the stock model (no merge, no selection).
    budget: "faithful" is the released Stage II (its token count N depends on how many frames
        Stage I left); "exact" fixes N = ceil(r·B·P) before the encoder runs, a documented
        deviation for servers that size placeholders first (see BUDGETS).
    """

    retention: float = DEFAULT_RETENTION
    prune_layers: tuple[int, ...] = field(default=(10, 21, 23))
    tau: float = 0.3
    ema: float = 0.9
    max_window: int = 6
    drop_last_middle: bool = True
    inner_layer: int = 18
    inner_ratio: float = 0.5
    enabled: bool = True
    budget: str = "faithful"

    def __post_init__(self) -> None:
        # A list from JSON or the CLI is accepted and frozen into a tuple.
        object.__setattr__(self, "prune_layers", tuple(int(x) for x in self.prune_layers))
        check_retention(self.retention)
        if not self.prune_layers:
            raise ConfigError("prune_layers=() is empty: give at least one vision layer index, e.g. 10,21,23")
        if any(layer < 0 for layer in self.prune_layers):
            raise ConfigError(
                f"prune_layers={list(self.prune_layers)} has a negative layer: indices are >= 0"
            )
        if any(b <= a for a, b in zip(self.prune_layers, self.prune_layers[1:], strict=False)):
            raise ConfigError(
                f"prune_layers={list(self.prune_layers)} must be strictly increasing, e.g. "
                f"{sorted(set(self.prune_layers))}"
            )
        _check_range("tau", self.tau, -1.0, 1.0, "[-1, 1] (a cosine similarity)")
        _check_range("ema", self.ema, 0.0, 1.0, "(0, 1]", low_open=True)
        if not isinstance(self.max_window, int) or self.max_window < 2:
            raise ConfigError(f"max_window={self.max_window} is out of range: must be an integer >= 2")
        if not isinstance(self.inner_layer, int) or self.inner_layer < 1:
            raise ConfigError(f"inner_layer={self.inner_layer} is out of range: must be an integer >= 1")
        _check_range("inner_ratio", self.inner_ratio, 0.0, 1.0, "[0, 1)", high_open=True)
        if self.budget not in BUDGETS:
            raise ConfigError(f"budget={self.budget!r} is unknown: choose one of {', '.join(BUDGETS)}")

    def check_model(self, *, vision_layers: int, language_layers: int | None) -> None:
        """Raise ConfigError when the layer indices do not exist in the model (None: no LLM to check)."""
        if not self.enabled:
            return
        if self.prune_layers[-1] >= vision_layers:
            raise ConfigError(
                f"prune_layers={list(self.prune_layers)} has layer {self.prune_layers[-1]}, but the vision "
                f"encoder has {vision_layers} layers (0..{vision_layers - 1})"
            )
        if language_layers is not None and self.inner_layer >= language_layers:
            raise ConfigError(
                f"inner_layer={self.inner_layer} is out of range: the language model has {language_layers} "
                f"layers (1..{language_layers - 1})"
            )

    def replace(self, **changes: Any) -> EarlyTomConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prune_layers"] = list(self.prune_layers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EarlyTomConfig:
        """The inverse of to_dict (a manifest's `config`): every field present, none unknown, each
        of its JSON type; ConfigError names the field otherwise."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a JSON object of fields, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise ConfigError(f"config has unknown field '{unknown[0]}' (fields: {', '.join(names)})")
        missing = [name for name in names if name not in data]
        if missing:
            raise ConfigError(f"config is missing field '{missing[0]}'")
        for name in names:
            _check_json_type(name, data[name], _JSON_TYPES[name])
        return cls(**data)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of to_dict(): the setting's identity in a manifest."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# The JSON type of each field, as to_dict writes it and from_dict reads it (a new field goes here too).
_JSON_TYPES: dict[str, str] = {
    "retention": "number",
    "prune_layers": "list of integers",
    "tau": "number",
    "ema": "number",
    "max_window": "integer",
    "drop_last_middle": "boolean",
    "inner_layer": "integer",
    "inner_ratio": "number",
    "enabled": "boolean",
    "budget": "string",
}


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_json_type(name: str, value: Any, kind: str) -> None:
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = _is_integer(value)
    elif kind == "number":
        ok = _is_integer(value) or isinstance(value, float)
    elif kind == "string":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, list | tuple) and all(_is_integer(item) for item in value)
    if not ok:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(f"config field '{name}' must be {article} {kind}, got {value!r}")


def preset(
    task: str | None = DEFAULT_TASK,
    retention: float = DEFAULT_RETENTION,
    *,
    tau: float | None = None,
    prune_layers: Sequence[int] | None = None,
    family: str = "llava-onevision",
    **overrides: Any,
) -> EarlyTomConfig:
    """The one constructor: the authors' setting for `task` at `retention` in the preset table of
    model `family` (task None: the family's default), keyword overrides replacing single fields.
    `tau` or `prune_layers` alone replaces the preset's value; with both given, any retention in
    (0, 1] works and the preset table is not consulted."""
    check_retention(retention)
    if family not in FAMILY_PRESETS:
        raise ConfigError(f"unknown model family '{family}': choose one of {', '.join(FAMILY_PRESETS)}")
    table = FAMILY_PRESETS[family]
    task = DEFAULT_TASKS[family] if task is None else task
    if task not in table:
        where = "" if family == "llava-onevision" else f" for {family}"
        raise ConfigError(f"unknown preset '{task}'{where}: choose one of {', '.join(table)}")
    if tau is None or prune_layers is None:
        table_tau, table_layers = _tabled(table, task, retention)
        tau = table_tau if tau is None else tau
        prune_layers = table_layers if prune_layers is None else prune_layers
    chosen: dict[str, Any] = {"retention": retention, "tau": tau, "prune_layers": tuple(prune_layers)}
    return EarlyTomConfig(**(chosen | overrides))


def _tabled(
    presets: dict[str, dict[float, tuple[float, tuple[int, ...]]]], task: str, retention: float
) -> tuple[float, tuple[int, ...]]:
    table = presets[task]
    key = next((r for r in table if math.isclose(r, retention, abs_tol=1e-9)), None)
    if key is None:
        have = ", ".join(f"{r:.2f}" for r in table)
        raise ConfigError(
            f"preset '{task}' has no setting for retention={retention} (it has {have}); "
            "give tau and prune_layers yourself for other ratios"
        )
    return table[key]


def check_retention(retention: float) -> None:
    _check_range("retention", retention, 0.0, 1.0, "(0, 1]", low_open=True)


def _check_range(
    name: str,
    value: float,
    low: float,
    high: float,
    allowed: str,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{name}={value} is out of range: must be in {allowed}")

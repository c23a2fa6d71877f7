"""The shared flags of the command lines, each declared once: name, type, default, help, validation.

A group decorator adds its options to a command and hands the command one parsed, frozen object
(`model: ModelOptions`, `setting: SettingOptions`, ...) instead of one parameter per flag. Groups
are applied above `friendly_errors`; building their objects never raises, the library calls made
from them do (`SettingOptions.config()` goes through `earlytom.config.preset`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from earlytom.cli.paramtypes import Count, ModelOption, NumberList, VideoPath
from earlytom.config import BUDGETS, DEFAULT_RETENTION, DEFAULT_TASK, TASKS, EarlyTomConfig, preset
from earlytom.errors import ConfigError, InputError
from earlytom.models.context import MAX_FRAMES

if TYPE_CHECKING:
    import torch

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEFAULTS = EarlyTomConfig()
RETENTIONS = "fractions, e.g. 0.1,0.15,0.2,0.25"  # what a --retention list holds


# --- every flag, once ----------------------------------------------------------------------------------


def model_flag(default: str) -> click.Option:
    return ModelOption(["--model"], default=default, show_default=True)


def random_weights_flag() -> click.Option:
    return click.Option(
        ["--random-weights"],
        is_flag=True,
        help="The published model's real architecture with random weights (timing only).",
    )


def preset_flag() -> click.Option:
    return click.Option(
        ["--preset", "task"], default=None, type=click.Choice(list(TASKS)),
        help=f"Which benchmark's tuned (tau, prune layers) to use, from the model family's table "
        f"[default: {DEFAULT_TASK}; qwen2.5-vl: default, our untuned choice].",
    )  # fmt: skip


def retention_flag(default: float | None) -> click.Option:
    return click.Option(
        ["--retention"], default=default, show_default=default is not None, type=float,
        help="Fraction of the visual tokens kept; the presets have 0.1, 0.15, 0.2, 0.25.",
    )  # fmt: skip


def retentions_flag() -> click.Option:
    return click.Option(
        ["--retention", "retentions"], default="0.1,0.15,0.2,0.25", show_default=True,
        type=NumberList(float, RETENTIONS),
        help="Comma-separated fractions of the visual tokens kept, one EarlyTom setting each.",
    )  # fmt: skip


def tau_flag() -> click.Option:
    return click.Option(
        ["--tau"], type=float,
        help="Override the preset's segmentation threshold (with --prune-layers any retention works).",
    )  # fmt: skip


def prune_layers_flag() -> click.Option:
    return click.Option(
        ["--prune-layers"], type=NumberList(int, "layer indices"),
        help="Override the preset's prune layers, e.g. 10,21,23.",
    )  # fmt: skip


def max_window_flag() -> click.Option:
    return click.Option(
        ["--max-window"], default=DEFAULTS.max_window, show_default=True, type=Count(2),
        help="Segment length limit (a segment holds at most max_window - 1 frames, as released).",
    )  # fmt: skip


def keep_last_middle_flag() -> click.Option:
    return click.Option(
        ["--keep-last-middle"], is_flag=True,
        help="Keep the middle frame the released code drops (corrected variant).",
    )  # fmt: skip


def budget_flag() -> click.Option:
    return click.Option(
        ["--budget"], type=click.Choice(BUDGETS), default="faithful", show_default=True,
        help="Stage II token count: 'faithful' as released (N depends on the merges), 'exact' "
        "N = ceil(r·B·P) fixed before the encoder runs (what vLLM's video route needs; a deviation).",
    )  # fmt: skip


def no_compress_flag() -> click.Option:
    return click.Option(["--no-compress"], is_flag=True, help="Run the stock model: no merging, all tokens.")


def inner_merge_flag() -> click.Option:
    return click.Option(
        ["--inner-merge/--no-inner-merge"], default=True, show_default=True,
        help=f"Stage III: from decoder layer {DEFAULTS.inner_layer} on, keep "
        f"{1 - DEFAULTS.inner_ratio:.0%} of the visual tokens and fold the rest into them (every paper run).",
    )  # fmt: skip


def device_flag() -> click.Option:
    return click.Option(["--device"], default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


def dtype_flag() -> click.Option:
    return click.Option(
        ["--dtype"], default="auto", show_default=True, type=click.Choice(DTYPES),
        help="auto: float16 on CUDA, float32 on CPU.",
    )  # fmt: skip


def video_flag() -> click.Option:
    return click.Option(
        ["--video"], required=True, type=VideoPath(),
        help="Video file (decoded once); 'demo' is the project's demo clip (see 'earlytom demo-clip').",
    )  # fmt: skip


def allow_partial_flag() -> click.Option:
    return click.Option(
        ["--allow-partial-video", "allow_partial"], is_flag=True,
        help="Accept a truncated or partly undecodable video: sample from the frames that decode.",
    )  # fmt: skip


def prompt_flag(default: str | None) -> click.Option:
    return click.Option(
        ["--prompt"], default=default, required=default is None, show_default=default is not None,
        help="Question or instruction about the video.",
    )  # fmt: skip


def frames_flag() -> click.Option:
    return click.Option(
        ["--frames"], default=None, type=Count(1, MAX_FRAMES),
        help="Frames B sampled uniformly from the video [default: the model family's: 32, llava-video 64].",
    )  # fmt: skip


def warmup_flag(default: int) -> click.Option:
    return click.Option(
        ["--warmup"], default=default, show_default=True, type=Count(0),
        help="Untimed runs first (a cold first run is not representative).",
    )  # fmt: skip


def runs_flag(default: int) -> click.Option:
    return click.Option(["--runs"], default=default, show_default=True, type=Count(1), help="Timed runs.")


def backend_flag(default: str) -> click.Option:
    return click.Option(
        ["--backend"], default=default, show_default=True, type=click.Choice(BACKENDS),
        help="What runs the vision segments: torch (the modules), onnxruntime (an exported folder's "
        "ONNX files), tensorrt (its plans); auto: torch without an exported folder, onnxruntime with one.",
    )  # fmt: skip


# --- the parsed objects --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    model: str
    random_weights: bool = False


@dataclass(frozen=True)
class SettingOptions:
    """The EarlyTom setting flags; a command that lacks a flag gets its default here."""

    task: str | None = None  # None: the model family's default preset
    retention: float | None = DEFAULT_RETENTION  # None: `flops` without --retention
    tau: float | None = None
    prune_layers: tuple[int, ...] | None = None
    max_window: int = DEFAULTS.max_window
    keep_last_middle: bool = False
    budget: str = "faithful"
    no_compress: bool = False
    inner_merge: bool = True  # Stage III on/off (its layer and ratio live in EarlyTomConfig)
    given: tuple[str, ...] = ()  # the flags shaping the EarlyTomConfig that the command line set

    def config(self, family: str = "llava-onevision") -> EarlyTomConfig:
        """The setting, from the preset table of the model's `family`."""
        if self.retention is None:
            raise ConfigError("an EarlyTom setting needs --retention, e.g. --retention 0.1")
        return preset(
            self.task, self.retention, tau=self.tau, prune_layers=self.prune_layers,
            max_window=self.max_window, drop_last_middle=not self.keep_last_middle,
            enabled=not self.no_compress, budget=self.budget, family=family,
        )  # fmt: skip

    def config_unless_folder(
        self, artifacts: Path | None, family: str = "llava-onevision"
    ) -> EarlyTomConfig | None:
        """The setting; None with an export folder, which carries its own (flags that would
        change it are refused)."""
        if artifacts is None:
            return self.config(family)
        if self.given:
            raise InputError(
                f"{', '.join(self.given)} cannot change an exported folder's setting: re-export it with "
                "them instead"
            )
        return None


@dataclass(frozen=True)
class SweepOptions:
    """`bench`: one preset at several retentions."""

    task: str | None  # None: the model family's default preset
    retentions: tuple[float, ...]


@dataclass(frozen=True)
class DeviceOptions:
    device: str = "auto"
    dtype: str = "auto"

    def torch_dtype(self) -> torch.dtype | None:
        """None for auto (the library picks float16 on CUDA, float32 on CPU)."""
        import torch

        return None if self.dtype == "auto" else getattr(torch, self.dtype)


@dataclass(frozen=True)
class VideoOptions:
    video: Path
    frames: int | None = None  # None: the model family's default
    allow_partial: bool = False  # --allow-partial-video, where the command takes it

    def count(self, model: str) -> int:
        """--frames, or the frame count of `model`'s family (ModelError for an unknown model)."""
        from earlytom.models.registry import family_of

        return self.frames if self.frames is not None else family_of(model).frames


# --- the decorators ------------------------------------------------------------------------------------


def model_options(*, default: str = "tiny", random_weights: bool = True) -> Decorator:
    """--model [--random-weights] -> `model: ModelOptions`."""
    flags = [model_flag(default), *([random_weights_flag()] if random_weights else [])]
    return option_group("model", flags, fields_of(ModelOptions))


def setting_options(
    *, retention: float | None = DEFAULT_RETENTION, tau: bool = True, keep_last_middle: bool = True,
    no_compress: bool = False, inner_merge: bool = False,
) -> Decorator:  # fmt: skip
    """--preset --retention [--tau] --prune-layers --max-window [--keep-last-middle] --budget [--no-compress]
    [--inner-merge/--no-inner-merge] -> `setting: SettingOptions`."""
    flags = [
        preset_flag(), retention_flag(retention), *([tau_flag()] if tau else []), prune_layers_flag(),
        max_window_flag(), *([keep_last_middle_flag()] if keep_last_middle else []), budget_flag(),
        *([no_compress_flag()] if no_compress else []), *([inner_merge_flag()] if inner_merge else []),
    ]  # fmt: skip

    def build(values: dict[str, Any], given: tuple[str, ...]) -> SettingOptions:
        shaping = tuple(flag for flag in given if flag != "--inner-merge")  # Stage III is the LLM's side
        return SettingOptions(**values, given=shaping)

    return option_group("setting", flags, build)


def sweep_options() -> Decorator:
    """--preset --retention LIST -> `sweep: SweepOptions`."""
    return option_group("sweep", [preset_flag(), retentions_flag()], fields_of(SweepOptions))


def device_options() -> Decorator:
    """--device --dtype -> `device: DeviceOptions`."""
    return option_group("device", [device_flag(), dtype_flag()], fields_of(DeviceOptions))


def video_options(*, allow_partial: bool = False) -> Decorator:
    """--video --frames [--allow-partial-video] -> `video: VideoOptions`."""
    flags = [video_flag(), frames_flag(), *([allow_partial_flag()] if allow_partial else [])]
    return option_group("video", flags, fields_of(VideoOptions))


def frames_option() -> Decorator:
    """--frames alone (no video to sample from) -> `frames: int`."""
    return plain(frames_flag())


def prompt_option(default: str | None = None) -> Decorator:
    """--prompt (None: required) -> `prompt: str`."""
    return plain(prompt_flag(default))


def warmup_option(default: int) -> Decorator:
    return plain(warmup_flag(default))


def runs_option(default: int) -> Decorator:
    return plain(runs_flag(default))


def backend_option(default: str = "auto") -> Decorator:
    return plain(backend_flag(default))


def plain(option: click.Option) -> Decorator:
    """One shared flag passed to the command as its own keyword argument."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command.__click_params__ = [*getattr(command, "__click_params__", []), option]  # type: ignore[attr-defined]
        return command

    return decorate


Build = Callable[[dict[str, Any], tuple[str, ...]], Any]  # (values by name, flags given) -> object


def fields_of(cls: Callable[..., Any]) -> Build:
    """A group object made of its flags' values, one field per parameter name."""
    return lambda values, _given: cls(**values)


def option_group(target: str, options: Sequence[click.Option], build: Build) -> Decorator:
    """Add `options` to a command (shown in this order) and pass it `target=build(values, given)`:
    values by parameter name, given the flags that came from the command line."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        names = [str(option.name) for option in options]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            context = click.get_current_context()
            given = tuple(
                option.opts[0]
                for option in options
                if context.get_parameter_source(str(option.name)) is ParameterSource.COMMANDLINE
            )
            return command(*args, **{target: build(values, given)}, **kwargs)

        # click.command reads __click_params__ bottom-up: the first option goes last.
        wrapper.__click_params__ = [*getattr(command, "__click_params__", []), *reversed(options)]  # type: ignore[attr-defined]
        return wrapper

    return decorate

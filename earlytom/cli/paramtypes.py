"""Parameter types of the shared flags: their errors name the flag and the value given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from earlytom.cli.common import parse_list
from earlytom.errors import ConfigError


class FlagValueError(click.BadParameter):
    """A bad value whose message already names the flag: printed as it is."""

    def format_message(self) -> str:
        return self.message


def flag_of(param: click.Parameter | None) -> str:
    return param.opts[0] if param is not None and param.opts else "value"


class Count(click.IntRange):
    """click.IntRange(min=low, max=high), worded `--frames=0 is out of range: must be an integer >= 1`
    (`... in 1..1024` with a maximum)."""

    def __init__(self, low: int, high: int | None = None) -> None:
        super().__init__(min=low, max=high)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            bound = f">= {self.min}" if self.max is None else f"in {self.min}..{self.max}"
            raise FlagValueError(
                f"{flag_of(param)}={value} is out of range: must be an integer {bound}", ctx, param
            ) from None


class VideoPath(click.Path):
    """A video file, or `demo`: the project's demo clip (written once and cached, see
    `earlytom.models.demo_clip`); `./demo` is a file named demo."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value == "demo":
            from earlytom.errors import EarlyTomError
            from earlytom.models.demo_clip import demo_clip_path

            try:
                return demo_clip_path()
            except EarlyTomError as exc:
                raise FlagValueError(f"{flag_of(param)} demo: {exc}", ctx, param) from None
        return super().convert(value, param, ctx)


class NumberList(click.ParamType):
    """Comma-separated numbers -> a tuple (`earlytom.cli.common.parse_list`)."""

    name = "list"

    def __init__(self, cast: type[int] | type[float], what: str) -> None:
        self.cast, self.what = cast, what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_list(str(value), self.cast, option=flag_of(param), what=self.what)
        except ConfigError as exc:
            raise FlagValueError(str(exc), ctx, param) from None


class ModelOption(click.Option):
    """--model: its help lists the registered models, read only when help is shown (the registry
    imports torch, which `earlytom --help` must not)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from earlytom.models.registry import MODELS

        self.help = (
            f"A registered model ({', '.join(MODELS)}) or a local checkpoint folder; real weights load "
            "from the folder or the local Hugging Face cache, never from the network."
        )
        return super().get_help_record(ctx)

"""Shared pieces of the command lines: one-line user errors, list parsing, progress."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

import click

from earlytom.errors import ConfigError, EarlyTomError

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Command(click.Command):
    """A command whose command-line errors (bad value, missing or unknown option) are one
    `error: ...` line and exit code 1, like the EarlyTomError that friendly_errors reports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = HELP_OPTIONS | (kwargs.get("context_settings") or {})
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            usage_error(ctx, exc)


class Group(click.Group):
    """A command group with the same convention: an unknown command or option is one `error: ...`
    line and exit code 1; no arguments at all prints the help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = HELP_OPTIONS | (kwargs.get("context_settings") or {})
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(0)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            usage_error(ctx, exc)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            usage_error(ctx, exc)


def usage_error(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """A command-line mistake as one `error: ...` line on stderr, exit code 1."""
    click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
    ctx.exit(1)


def friendly_errors(command: Callable[..., None]) -> Callable[..., None]:
    """EarlyTomError -> `error: <message>` on stderr and exit 1; --verbose keeps the traceback."""

    @wraps(command)
    def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> None:
        _quiet_libraries(verbose)
        try:
            command(*args, **kwargs)
        except EarlyTomError as exc:
            if verbose:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return click.option("--verbose", is_flag=True, help="Show tracebacks and library logs.")(wrapper)


def _quiet_libraries(verbose: bool) -> None:
    """Without --verbose: no library warnings (earlytom's own are reported as `warning:` lines),
    no transformers logs or progress bars, no FFmpeg log lines from OpenCV."""
    if not verbose:
        warnings.simplefilter("ignore")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet; read when OpenCV first opens a file
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def parse_list(text: str, cast: type[int] | type[float], *, option: str, what: str) -> tuple:
    """Comma-separated numbers -> a tuple; ConfigError naming the option when a part is not a number."""
    try:
        return tuple(cast(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{option} '{text}' is not a comma-separated list of {what}") from exc


def progress(message: str) -> None:
    click.echo(message, err=True)

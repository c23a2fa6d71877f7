"""Shared pieces of the command lines: one-line user errors, option parsing, progress."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from earlytom.errors import ConfigError, EarlyTomError

DTYPES = ("auto", "float32", "float16", "bfloat16")


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
    if not verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def parse_list(text: str, cast: type[int] | type[float], *, option: str, what: str) -> tuple:
    """Comma-separated numbers -> a tuple; ConfigError naming the option when a part is not a number."""
    try:
        return tuple(cast(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{option} '{text}' is not a comma-separated list of {what}") from exc


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    return None if text is None else parse_list(text, int, option="--prune-layers", what="layer indices")


def progress(message: str) -> None:
    click.echo(message, err=True)

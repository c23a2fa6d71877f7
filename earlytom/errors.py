"""Errors the user can fix (one line in the CLI, exit 1) versus our own bugs (a traceback).

Every class here is a user error. Anything else that escapes is a bug in earlytom and keeps its
traceback.
"""

from __future__ import annotations


class EarlyTomError(Exception):
    """A problem the user can fix. The message is one line: what is wrong and what to do."""


class ConfigError(EarlyTomError):
    """An invalid compression setting (ratio, layer, preset...)."""


class VideoError(EarlyTomError):
    """A video that is missing, not a video, or has no decodable frame."""


class ModelError(EarlyTomError):
    """An unknown model name, or weights that are not available locally."""


class InputError(EarlyTomError):
    """Any other invalid argument (an empty prompt, a bad device name...)."""


class MissingDependencyError(EarlyTomError):
    """An optional dependency is not installed; the message names the extra to install."""


class ExportError(EarlyTomError):
    """An export that cannot proceed (output folder exists, unsupported setting...)."""


class ValidationError(EarlyTomError):
    """An exported graph disagrees with the PyTorch reference; carries the full report."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class EngineMismatchError(EarlyTomError):
    """An engine folder built for another builder, version, GPU or EarlyTom setting."""


class ArtifactError(EarlyTomError):
    """An artifact folder that is missing, malformed, from another format, or changed since export."""


class ServingError(EarlyTomError):
    """A serving request the server refused, or a server that cannot be reached."""

"""Errors raised by the datamodules, and the one helper that words bad arguments.

Every problem with a data file is a :class:`DataFormatError` (a ``ValueError``) that
names the file and what is wrong with it. Missing data is a
:class:`DataNotFoundError`, which is both a ``FileNotFoundError`` and a
``ValueError`` so that callers may catch either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """A data file exists but does not hold what its format promises."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataNotFoundError(FileNotFoundError, ValueError):
    """The data files are not where they were looked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "data not found"


class DownloadError(OSError):
    """A file could not be fetched, or what was fetched failed verification."""


def invalid_argument(field: str, value: Any, allowed: str) -> ValueError:
    """The ValueError for argument ``field`` whose ``value`` is not ``allowed``."""
    return ValueError(f"invalid {field}={value!r}: expected {allowed}")

"""Errors raised by labelchain's data layer.

Loaders read files that users fetch from elsewhere, so a bad file must say *which* file, *where* in
it, and *what was expected*, instead of surfacing as a deep IndexError from the parser.
"""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not follow its format; the message names the file, line/field and the rule."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", {field}"
        super().__init__(f"{where}: {message}")


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not where labelchain looked; the message lists the places and sources."""

"""Progress bars that suit both a terminal and a log file.

On a terminal, a tqdm bar redraws itself in place with carriage returns. Written to a file or a pipe
(`python experiments/train_rl.py > log 2>&1`, a scheduler's log), those redraws become thousands of
`\\r`-joined updates. There the bar writes one plain line at most every `LOG_INTERVAL` seconds (and
at the end) instead, so a log stays readable and small.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines in a log file


class _Lines:
    """A file for tqdm that writes each refresh as its own line, without carriage returns."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def progress_bar(enabled: bool = True, stream: IO[str] | None = None, **options: Any) -> tqdm:
    """tqdm on a terminal; on anything else plain lines every LOG_INTERVAL seconds; nothing when disabled."""
    stream = sys.stderr if stream is None else stream
    if not enabled or is_terminal(stream):
        return tqdm(file=stream, disable=not enabled, **options)
    options.pop("dynamic_ncols", None)
    options.pop("position", None)
    return tqdm(
        file=_Lines(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL, ncols=100, ascii=True, **options
    )

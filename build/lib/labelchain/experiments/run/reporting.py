"""Reports from inside a running grid cell: training calls `report()`; the grid decides where it goes.

A no-op outside a grid; the local backend feeds its progress line, the Ray backend Ray Tune
(experiments/grid/). It lives with the run, which calls it, so a run never imports the grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_reporter: Callable[[dict[str, Any], Path | None], None] | None = None


def report(metrics: dict[str, Any], checkpoint_run_dir: Path | None = None) -> None:
    """Called by training after a validation step (and after each checkpoint, with its run folder).

    A no-op outside a grid; in a grid it feeds the progress line (local) or Ray Tune (ray backend).
    """
    if _reporter is not None:
        _reporter({**metrics, "pid": os.getpid()}, checkpoint_run_dir)


@contextmanager
def reporting_to(reporter: Callable[[dict[str, Any], Path | None], None]) -> Iterator[None]:
    """Route `report()` calls made inside the block to `reporter(metrics, checkpoint_run_dir)`."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous

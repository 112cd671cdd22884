"""`--threads`: how many threads PyTorch uses in a process, one flag for every script.

A single run (train_rl, peers, tune's driver) defaults to `OMP_NUM_THREADS` when it is set (the
convention PyTorch and BLAS follow; the test command and CI set it to 1), else to every core this
process may use, so the main job uses a workstation's cores. A grid cell defaults to one thread: `--jobs N` cells
in parallel already fill N cores, and a cell's numbers must not depend on how many run beside it.
The execution layer (experiments.grid.execution, experiments.grid.ray_backend) wraps each cell in
`cell_threads`, so a script the cell calls (train_rl.main with `threads=None`) keeps the cell's count.
Tests and the committed benchmark figures use one thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_in_cell: int | None = None  # the thread count of the grid cell this process is running, if any


@dataclass
class Threads:
    """The `--threads` flag; every script's Args inherits it (grids through ExecutionFlags)."""

    threads: int | None = field(
        default=None,
        metadata={
            "help": "PyTorch threads (default: a single run OMP_NUM_THREADS if set, else every usable core; "
            "1 per grid cell, tune trial and benchmark; --threads 1 reproduces the committed results)",
            "at_least": 1,
        },
    )


# Above this, `--threads 1000000` made torch start threads until the OS refused (fork failures for every
# process of the user, then a segfault or a RuntimeError traceback); no machine we run on has this many.
MAX_THREADS = 1024


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a container quota)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """A single run's default: OMP_NUM_THREADS (its first number) when set, else the usable cores."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else usable_cores()


def set_threads(threads: int | None) -> int:
    """Use `threads` PyTorch threads; None = the cell's count inside a grid cell, else `default_threads()`."""
    import torch

    count = threads if threads is not None else (_in_cell or default_threads())
    if not 1 <= count <= MAX_THREADS:  # a one-line error, as resolve_device gives, whichever script was called
        raise SystemExit(f"error: --threads must be >= 1 and <= {MAX_THREADS}, got {count}")
    torch.set_num_threads(count)
    return count


@contextmanager
def cell_threads(threads: int | None) -> Iterator[int]:
    """Run one grid cell with `threads` (None = 1); `set_threads(None)` inside it keeps that count."""
    global _in_cell
    import torch

    before, torch_before = _in_cell, torch.get_num_threads()
    count = threads if threads is not None else 1
    _in_cell = count
    try:
        yield set_threads(count)
    finally:
        _in_cell = before
        torch.set_num_threads(torch_before)

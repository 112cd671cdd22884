"""One execution layer for the grid scripts: each grid cell runs locally or as one Ray Tune trial.

    --backend local                  (default) cells in this process, or --jobs N spawned processes
    --backend ray                    a local Ray instance with --jobs CPUs; each cell one Tune trial
    --backend ray --address auto     the running Ray cluster (`ray start --head` ...), or HOST:PORT

A cell is a module-level function and its keyword arguments (both picklable) plus the CPUs it
declares, which are also its PyTorch threads (`--threads`, default 1: experiments.run.threads); it
returns a JSON-able result, or None when it was stopped (Ctrl-C) and should not count.
The scripts merge each result as it arrives (`on_result`), so either backend writes the same files.

Inside a cell, `train_rl` calls `report()` after each validation step and after each checkpoint it
writes. Locally that feeds the progress line; in a Ray trial it becomes `tune.report`, with the run
folder's snapshot as a Ray checkpoint (experiments/grid/ray_backend.py, where restarts are explained).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


from labelchain.experiments.grid.cells import Cell, Progress
from labelchain.experiments.run.reporting import reporting_to
from labelchain.experiments.run.threads import Threads, cell_threads

BACKENDS = ("local", "ray")
RUNS_DIR_HELP = "the cells' run folders (grids that train through train_rl) and Ray Tune's trial folders"


def runs_dir_flag(default: str) -> Any:
    """A grid's own --runs-dir default, with the one help text (the field is ExecutionFlags')."""
    return field(default=default, metadata={"help": RUNS_DIR_HELP})


@dataclass
class ExecutionFlags(Threads):
    """Where a grid's cells run and with how many threads each; the grid scripts' Args inherit these flags."""

    backend: str = field(
        default="local",
        metadata={"help": f"from {BACKENDS}: local = this machine without Ray; ray = each cell one Ray Tune trial"},
    )
    address: str | None = field(
        default=None,
        metadata={"help": "ray: the cluster to join, auto or HOST:PORT (default: start a local Ray with --jobs CPUs)"},
    )
    jobs: int = field(
        default=1,
        metadata={"help": "cells at once: local = processes, ray = CPUs of the local Ray (a cluster has its own)"},
    )
    runs_dir: str = field(default="runs/grid", metadata={"help": RUNS_DIR_HELP})  # each grid: `runs_dir_flag`

    def execution_problems(self) -> list[str]:
        """Problems with these flags, one message each naming the flag (`check_backend`)."""
        return check_backend(self.backend, self.address, self.jobs)

    def run_grid(
        self, cells: list[Cell], on_result: Callable[[str, dict[str, Any]], object], **options: Any
    ) -> list[str]:
        """`run_cells` with these flags (backend, address, jobs, threads, runs_dir as Ray's storage);
        `options` are its others (metric, done_before, progress, should_stop). Returns the failed cells' keys."""
        options.setdefault("storage_dir", self.runs_dir)
        return run_cells(
            cells,
            on_result,
            backend=self.backend,
            address=self.address,
            jobs=self.jobs,
            threads=self.threads,
            **options,
        )


def check_backend(backend: str, address: str | None, jobs: int) -> list[str]:
    """Problems with the execution flags, as messages naming the flag (empty: fine)."""
    problems = []
    if backend not in BACKENDS:
        problems.append(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if address is not None and backend != "ray":
        problems.append(f"--address {address} needs --backend ray")
    if jobs < 1:
        problems.append(f"--jobs must be >= 1, got {jobs}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            problems.append("--backend ray needs Ray: pip install -e '.[ray]'")
    return problems


# ----------------------------------------------------------------------------- the runner
def run_cells(
    cells: list[Cell],
    on_result: Callable[[str, dict[str, Any]], object],
    *,
    backend: str = "local",
    address: str | None = None,
    jobs: int = 1,
    storage_dir: str | Path = "runs",
    metric: str = "nDCG@3",
    done_before: int = 0,
    progress: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    threads: int | None = None,
) -> list[str]:
    """Run `cells`, calling `on_result(key, result)` in this process as each one finishes.

    `threads` (the grid's --threads) replaces every cell's CPUs, which are its PyTorch threads.
    Returns the keys of cells that failed (their error is printed; the other cells go on) or were
    stopped. With backend local and jobs 1 an error propagates instead (debugging one cell).
    """
    if threads is not None:
        cells = [replace(cell, cpus=threads) for cell in cells]
    bar = Progress(cells, done_before, metric, progress)
    try:
        if backend == "ray":
            from labelchain.experiments.grid.ray_backend import (
                run_ray,
            )  # needs Ray; it imports this module's Cell and Progress

            return run_ray(cells, on_result, bar, address, jobs, Path(storage_dir))
        if jobs == 1 or len(cells) <= 1:
            return _run_in_process(cells, on_result, bar, should_stop)
        return _run_pool(cells, on_result, bar, jobs, should_stop)
    finally:
        bar.close()


def _run_in_process(cells: list[Cell], on_result, bar: Progress, should_stop) -> list[str]:
    left = [cell.key for cell in cells]
    for cell in cells:
        if should_stop():
            break
        bar.start(cell.key)

        def scored(metrics: dict[str, Any], _run_dir: Path | None, key: str = cell.key) -> None:
            bar.scored(key, metrics)

        with reporting_to(scored), cell_threads(cell.cpus):
            result = cell.function(**cell.kwargs)
        bar.finish(cell.key, ok=result is not None)
        if result is None:  # stopped by Ctrl-C: leave the rest for a rerun
            break
        on_result(cell.key, result)
        left.remove(cell.key)
    return left


def _pool_init() -> None:
    """Pool workers ignore Ctrl-C between tasks; train_rl catches it during training (checkpoint, stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_cell(function: Callable[..., dict[str, Any] | None], cpus: int, kwargs: dict[str, Any]):
    """A cell in a pool worker, with its own thread count."""
    with cell_threads(cpus):
        return function(**kwargs)


def _run_pool(cells: list[Cell], on_result, bar: Progress, jobs: int, should_stop) -> list[str]:
    left = [cell.key for cell in cells]
    context = multiprocessing.get_context("spawn")  # no forked torch state in the workers
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_pool_init) as pool:
        queue, stopped = list(cells), False
        running: dict[Future, str] = {}
        while queue or running:
            while queue and len(running) < jobs and not (stopped or should_stop()):
                cell = queue.pop(0)
                running[pool.submit(_run_cell, cell.function, cell.cpus, cell.kwargs)] = cell.key
                bar.start(cell.key)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                try:
                    result = future.result()
                except Exception:  # an unattended grid goes on; the failed cell stays missing
                    print(f"\ncell {key} failed:\n{traceback.format_exc()}", file=sys.stderr)
                    bar.finish(key, ok=False)
                    continue
                bar.finish(key, ok=result is not None)
                stopped = stopped or result is None
                if result is not None:
                    on_result(key, result)
                    left.remove(key)
    return left

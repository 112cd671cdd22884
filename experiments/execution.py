"""One execution layer for the grid scripts: each grid cell runs locally or as one Ray Tune trial.

    --backend local                  (default) cells in this process, or --jobs N spawned one-thread processes
    --backend ray                    a local Ray instance with --jobs CPUs; each cell one Tune trial
    --backend ray --address auto     the running Ray cluster (`ray start --head` ...), or HOST:PORT

A cell is a module-level function and its keyword arguments (both picklable) plus the CPUs it
declares; it returns a JSON-able result, or None when it was stopped (Ctrl-C) and should not count.
The scripts merge each result as it arrives (`on_result`), so either backend writes the same files.

Inside a cell, `train_rl` calls `report()` after each validation step and after each checkpoint it
writes. Locally that feeds the progress line. In a Ray trial it becomes `tune.report`, and a report
made right after a checkpoint carries a Ray checkpoint: a snapshot of the run folder's `config.json`,
every learner's `checkpoint.pt` and best `policy/`. When a worker dies, Tune restarts the trial
(up to MAX_FAILURES times); `restore_checkpoint()` writes the snapshot back into the run folder, and
the cell's usual resume (`run_lookup.train_or_resume`) continues from it, so a restarted trial ends
with the same numbers as an uninterrupted one. On a multi-node cluster `--runs-dir` must be a folder
every node sees (e.g. NFS): that is where the run folders, results and Tune's own files go.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from envs.metrics import is_better
from experiments.common import single_thread

BACKENDS = ("local", "ray")
MAX_FAILURES = 3  # Ray: restarts of a trial (from its last checkpoint) before the cell counts as failed
RESULT_KEY = "cell_result_json"  # the last report of a Ray trial carries the cell's result as JSON
SNAPSHOT_NOTE = "run_dir.txt"  # inside a Ray checkpoint: the absolute run folder it was taken from
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Cell:
    """One grid cell: `function(**kwargs)` -> JSON-able result (None = stopped), using `cpus` CPUs."""

    key: str
    function: Callable[..., dict[str, Any] | None]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cpus: int = 1


@dataclass
class ExecutionFlags:
    """Where a grid's cells run; the grid scripts' Args inherit these flags."""

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
        metadata={
            "help": "cells at once: local = one-thread processes, ray = CPUs of the local Ray (a cluster has its own)"
        },
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


# ----------------------------------------------------------------------------- reports from inside a cell
_reporter: Callable[[dict[str, Any], Path | None], None] | None = None


def report(metrics: dict[str, Any], checkpoint_run_dir: Path | None = None) -> None:
    """Called by training after a validation step (and after each checkpoint, with its run folder).

    A no-op outside a grid; in a grid it feeds the progress line (local) or Ray Tune (ray backend).
    """
    if _reporter is not None:
        _reporter({**metrics, "pid": os.getpid()}, checkpoint_run_dir)


def snapshot_run_dir(run_dir: Path, into: Path) -> None:
    """Copy what resuming needs (config.json, each learner's checkpoint.pt and policy/) into `into`."""
    run_dir = Path(run_dir).resolve()
    (into / SNAPSHOT_NOTE).write_text(str(run_dir))
    for path in [run_dir / "config.json", *run_dir.glob("*/checkpoint.pt"), *run_dir.glob("*/policy/*")]:
        if path.is_file():
            target = into / "run" / path.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def restore_snapshot(snapshot: Path) -> Path:
    """Write a snapshot back into its run folder (created if this node lacks it); returns the folder."""
    run_dir = Path((snapshot / SNAPSHOT_NOTE).read_text().strip())
    for path in sorted((snapshot / "run").rglob("*")):
        if path.is_file():
            target = run_dir / path.relative_to(snapshot / "run")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".restoring")
            shutil.copy2(path, tmp)
            os.replace(tmp, target)  # a kill during restore leaves the old file or the new one, not half
    return run_dir


# ----------------------------------------------------------------------------- progress line
class Progress:
    """One live line: cells done / running / failed, and the best validation score reported so far."""

    def __init__(self, cells: list[Cell], done_before: int, metric: str, enabled: bool) -> None:
        self.metric = metric
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.done, self.total = done_before, len(cells) + done_before
        self.bar = tqdm(
            total=len(cells) + done_before,
            initial=done_before,
            desc="grid",
            unit="cell",
            disable=not enabled,
            position=0,
            dynamic_ncols=True,
        )

    def start(self, key: str) -> None:
        self.running.add(key)
        self._show()

    def scored(self, key: str, metrics: dict[str, Any]) -> None:
        score = metrics.get(f"val/{self.metric}")
        if isinstance(score, (int, float)) and is_better(self.metric, score, self.best and self.best[0]):
            self.best = (float(score), f"{key} {metrics.get('learner', '')}".strip())
            self._show()

    def finish(self, key: str, ok: bool) -> None:
        self.running.discard(key)
        if ok:
            self.done += 1
            self.bar.update(1)
        else:
            self.failed.add(key)
        self._show()

    def line(self) -> str:
        best = f"best val {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "best -"
        return f"done {self.done}/{self.total}, running {len(self.running)}, failed {len(self.failed)}, {best}"

    def _show(self) -> None:
        self.bar.set_postfix_str(self.line(), refresh=True)

    def close(self) -> None:
        self.bar.close()


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
) -> list[str]:
    """Run `cells`, calling `on_result(key, result)` in this process as each one finishes.

    Returns the keys of cells that failed (their error is printed; the other cells go on) or were
    stopped. With backend local and jobs 1 an error propagates instead (debugging one cell).
    """
    bar = Progress(cells, done_before, metric, progress)
    try:
        if backend == "ray":
            return _run_ray(cells, on_result, bar, address, jobs, Path(storage_dir))
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

        with reporting_to(scored):
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
    single_thread()


def _run_pool(cells: list[Cell], on_result, bar: Progress, jobs: int, should_stop) -> list[str]:
    left = [cell.key for cell in cells]
    context = multiprocessing.get_context("spawn")  # no forked torch state in the workers
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_pool_init) as pool:
        queue, stopped = list(cells), False
        running: dict[Future, str] = {}
        while queue or running:
            while queue and len(running) < jobs and not (stopped or should_stop()):
                cell = queue.pop(0)
                running[pool.submit(cell.function, **cell.kwargs)] = cell.key
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


# ----------------------------------------------------------------------------- Ray Tune
def _importable(function: Callable) -> Callable:
    """A function of a script run as __main__, re-imported under its module name, so Ray workers
    import it by reference instead of unpickling a copy of the whole script."""
    if function.__module__ != "__main__":
        return function
    import importlib

    script = sys.modules["__main__"].__file__
    if script is None:
        return function
    module = importlib.import_module(f"experiments.{Path(script).stem}")
    return getattr(module, function.__qualname__)


@contextmanager
def reporting_to(reporter: Callable[[dict[str, Any], Path | None], None]) -> Iterator[None]:
    """Route `report()` calls made inside the block to `reporter(metrics, checkpoint_run_dir)`."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


def restore_from_ray() -> None:
    """In a restarted Ray trial: put the run folder back as it was at the trial's last checkpoint."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            restore_snapshot(Path(folder))


def send_to_ray(metrics: dict[str, Any], run_dir: Path | None) -> None:
    """`tune.report(metrics)`, with a snapshot of `run_dir` as the Ray checkpoint when one is given."""
    from ray import tune

    if run_dir is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="labelchain-checkpoint-") as folder:
        snapshot_run_dir(run_dir, Path(folder))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))  # copied to storage here


def _trial(config: dict[str, Any], cells: dict[str, Cell], cwd: str) -> None:
    """The Tune function trainable of one cell: restore the last checkpoint, run, report the result."""
    from ray import tune

    single_thread()
    if Path(cwd).is_dir():  # relative --runs-dir / --data-dir mean what they mean to the driver
        os.chdir(cwd)
    cell = cells[config["cell"]]
    restore_from_ray()
    with reporting_to(send_to_ray):
        result = cell.function(**cell.kwargs)
    import ray

    tune.report({RESULT_KEY: json.dumps(result), "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()})


def ray_init(address: str | None, num_cpus: int) -> bool:
    """Connect to `address` or start a local Ray with `num_cpus`; False when Ray was already up."""
    import ray

    if ray.is_initialized():
        return False
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]  # workers import experiments.* by reference
    runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}}
    if address is None:  # "local": a new instance, even when a cluster runs on this machine
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env
        )
    else:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    return True


def trial_dirname(trial) -> str:
    """Tune folder of a trial: its cell key with path-safe characters."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(trial.config.get("cell", trial.trial_id)))


def _run_ray(
    cells: list[Cell], on_result, bar: Progress, address: str | None, jobs: int, storage_dir: Path
) -> list[str]:
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we keep 1 on purpose
    import ray
    from ray import tune

    by_key = {cell.key: Cell(cell.key, _importable(cell.function), cell.kwargs, cell.cpus) for cell in cells}
    results: dict[str, dict[str, Any] | None] = {}

    class GridCallback(tune.Callback):
        """Runs in this process: feeds the progress line and hands finished cells to on_result."""

        def on_trial_start(self, iteration, trials, trial, **info):
            bar.start(trial.config["cell"])

        def on_trial_result(self, iteration, trials, trial, result, **info):
            key = trial.config["cell"]
            if RESULT_KEY in result:
                results[key] = json.loads(result[RESULT_KEY])
            else:
                bar.scored(key, result)

        def on_trial_recover(self, iteration, trials, trial, **info):
            print(f"\ncell {trial.config['cell']}: worker failed, restarting from its last checkpoint", file=sys.stderr)

        def on_trial_complete(self, iteration, trials, trial, **info):
            key = trial.config["cell"]
            result = results.get(key)
            bar.finish(key, ok=result is not None)
            if result is not None:
                on_result(key, result)

        def on_trial_error(self, iteration, trials, trial, **info):
            bar.finish(trial.config["cell"], ok=False)
            print(
                f"\ncell {trial.config['cell']} failed after {MAX_FAILURES} restarts: see {trial.path}", file=sys.stderr
            )

    started_here = ray_init(address, jobs)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_trial, cells=by_key, cwd=os.getcwd()),
            lambda config: tune.PlacementGroupFactory([{"CPU": by_key[config["cell"]].cpus}]),
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"cell": tune.grid_search(list(by_key))},
            tune_config=tune.TuneConfig(trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=f"grid_{int(time.time())}",
                storage_path=str(storage_dir.resolve() / "ray"),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                callbacks=[GridCallback()],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    return [key for key in by_key if results.get(key) is None]

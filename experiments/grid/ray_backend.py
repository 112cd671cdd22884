"""The Ray backend of experiments/grid/execution.py: each grid cell one Ray Tune trial, restartable.

Kept apart from execution.py, which holds what both backends share (cells, flags, the progress
line, `report()`) and runs cells locally without Ray; everything here needs Ray and is imported
only when `--backend ray` (or tune.py) asks for it.

In a Ray trial `report()` becomes `tune.report`, and a report made right after a checkpoint carries
a Ray checkpoint: a snapshot of the run folder's `config.json`, every learner's `checkpoint.pt` and
best `policy/`. When a worker dies, Tune restarts the trial (up to MAX_FAILURES times);
`restore_from_ray()` writes the snapshot back into the run folder, and the cell's usual resume
(`run_lookup.train_or_resume`) continues from it, so a restarted trial ends with the same numbers as
an uninterrupted one. On a multi-node cluster `--runs-dir` must be a folder every node sees (e.g.
NFS): that is where the run folders, results and Tune's own files go.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelchain.experiments.run.common import REPO_ROOT
from labelchain.experiments.grid.cells import Cell, Progress
from labelchain.experiments.run.reporting import reporting_to
from labelchain.experiments.run.threads import cell_threads

MAX_FAILURES = 3  # Ray: restarts of a trial (from its last checkpoint) before the cell counts as failed
RESULT_KEY = "cell_result_json"  # the last report of a Ray trial carries the cell's result as JSON
SNAPSHOT_NOTE = "run_dir.txt"  # inside a Ray checkpoint: the absolute run folder it was taken from


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
    parts = Path(script).resolve().relative_to(REPO_ROOT / "experiments").with_suffix("").parts
    module = importlib.import_module(".".join(("labelchain", "experiments", *parts)))
    return getattr(module, function.__qualname__)


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

    if Path(cwd).is_dir():  # relative --runs-dir / --data-dir mean what they mean to the driver
        os.chdir(cwd)
    cell = cells[config["cell"]]
    restore_from_ray()
    with reporting_to(send_to_ray), cell_threads(cell.cpus):  # the trial's CPUs are its threads
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


def run_ray(
    cells: list[Cell], on_result, bar: Progress, address: str | None, jobs: int, storage_dir: Path
) -> list[str]:
    """`execution.run_cells` with backend ray: one Tune trial per cell; returns the keys that failed."""
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

    started_here = ray_init(address, jobs * max((cell.cpus for cell in cells), default=1))  # --jobs cells at once
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

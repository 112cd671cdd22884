"""experiments/grid/execution.py and ray_backend.py without Ray: run-folder snapshots (what a Ray
checkpoint carries), flag checks, the progress line, and the local backend's cells and reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labelchain.experiments import compare_orderings
from labelchain.experiments.grid import execution, ray_backend
from labelchain.experiments.grid.cells import Cell, Progress
from labelchain.experiments.run.reporting import report
from labelchain.experiments.run.config import ArgsError


def make_run(root: Path) -> Path:
    run = root / "runs" / "emotions__compare__0__1"
    for learner in ("freq2rare", "rearrange"):
        (run / learner / "policy").mkdir(parents=True)
        (run / learner / "checkpoint.pt").write_bytes(learner.encode() * 3)
        (run / learner / "policy" / "weights.pt").write_bytes(b"w-" + learner.encode())
        (run / learner / "events.out.tfevents.1.host").write_bytes(b"curves")
    (run / "config.json").write_text('{"args": {}}')
    return run


def test_a_snapshot_restores_config_checkpoints_and_policies_but_not_curves(tmp_path):
    run = make_run(tmp_path)
    files = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and "events" not in p.name}
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    ray_backend.snapshot_run_dir(run, snapshot)
    (run / "rearrange" / "checkpoint.pt").write_bytes(b"newer, lost with the worker")
    for path in sorted(run.rglob("*"), reverse=True):  # the node lost the folder
        path.unlink() if path.is_file() else path.rmdir()
    run.rmdir()
    assert ray_backend.restore_snapshot(snapshot) == run.resolve()
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    assert not list(run.rglob("*.restoring"))


@pytest.mark.parametrize(
    "backend, address, jobs, message",
    [
        ("slurm", None, 1, "--backend must be one of ('local', 'ray'), got 'slurm'"),
        ("local", "auto", 1, "--address auto needs --backend ray"),
        ("local", None, 0, "--jobs must be >= 1, got 0"),
    ],
)
def test_execution_flags_are_checked_with_the_flag_named(backend, address, jobs, message):
    assert message in execution.check_backend(backend, address, jobs)
    with pytest.raises(ArgsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_orderings.resolve_args(compare_orderings.Args(backend=backend, address=address, jobs=jobs))


def test_progress_line_counts_cells_and_keeps_the_best_score_in_the_metric_direction():
    cells = [Cell(key, print) for key in ("a", "b", "c")]
    bar = Progress(cells, done_before=0, metric="hamming_loss", enabled=False)
    bar.start("a"), bar.start("b")
    bar.scored("a", {"learner": "rearrange", "val/hamming_loss": 0.30})
    bar.scored("b", {"learner": "combined", "val/hamming_loss": 0.20})
    bar.scored("a", {"learner": "ppo", "val/hamming_loss": 0.25})  # worse: lower is better here
    bar.finish("a", ok=True), bar.finish("b", ok=False)
    assert bar.line() == "done 1/3, running 0, failed 1, best val hamming_loss 0.2000 (b combined)"


def reporting_cell(value: float, log: list) -> dict | None:
    """A cell that reports two validation steps, the second with a checkpoint, like LearnerRun does."""
    report({"learner": "x", "update": 1, "val/nDCG@3": value})
    report({"learner": "x", "update": 2, "val/nDCG@3": value + 0.1}, Path("run"))
    log.append(value)
    return None if value < 0 else {"value": value}


def test_local_backend_runs_cells_in_order_and_stops_at_a_stopped_cell():
    log: list = []
    got: dict = {}
    cells = [Cell(str(v), reporting_cell, {"value": v, "log": log}) for v in (0.5, -1.0, 0.7)]
    left = execution.run_cells(cells, got.__setitem__, progress=False)
    assert got == {"0.5": {"value": 0.5}} and log == [0.5, -1.0] and left == ["-1.0", "0.7"]
    report({"learner": "x", "update": 3})  # outside a grid: a no-op


def test_a_script_function_is_reimported_under_its_installed_name(monkeypatch):
    """A cell function of a script run as a file (module __main__) goes to Ray by its labelchain name."""
    from labelchain.experiments import compare_orderings
    from labelchain.experiments.run.common import REPO_ROOT

    def compute_cell() -> None: ...

    compute_cell.__module__, compute_cell.__qualname__ = "__main__", "compute_cell"
    main = type(sys)("__main__")
    main.__file__ = str(REPO_ROOT / "experiments" / "compare_orderings.py")
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert ray_backend._importable(compute_cell) is compare_orderings.compute_cell

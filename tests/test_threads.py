"""--threads: every script has the flag; a single run uses the usable cores, a grid cell one thread."""

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch

from labelchain.experiments.grid import execution
from labelchain.experiments.run import threads
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.run.threads import cell_threads, set_threads

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(  # every script with flags, found on disk: a new script is held to --threads too
    ".".join(path.relative_to(EXPERIMENTS).with_suffix("").parts)
    for path in [*EXPERIMENTS.glob("*.py"), *EXPERIMENTS.glob("bench/*.py")]
    if path.stem != "__init__" and "class Args" in path.read_text()
)


@pytest.fixture(autouse=True)
def _one_thread_after():
    yield
    torch.set_num_threads(1)  # the suite's setting (conftest), whatever a test did


def threads_seen() -> dict[str, int]:
    """A grid cell that calls a script the way train_rl.main does: set_threads(None)."""
    return {"threads": set_threads(None), "torch": torch.get_num_threads()}


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_threads_flag(name):
    args_class = importlib.import_module(f"labelchain.experiments.{name}").Args
    field = {f.name: f for f in dataclasses.fields(args_class)}["threads"]
    assert field.default is None and field.metadata["at_least"] == 1


def test_single_run_uses_the_usable_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert threads.usable_cores() == 3
    assert set_threads(None) == 3 and torch.get_num_threads() == 3
    assert set_threads(2) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize(("omp", "expected"), [("2", 2), ("3,1", 3), ("", 5), ("0", 5), ("many", 5)])
def test_single_run_follows_omp_num_threads_when_set(monkeypatch, omp, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(5)), raising=False)
    assert threads.default_threads() == expected and set_threads(None) == expected


def test_a_cell_keeps_its_count_and_restores_the_process(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    torch.set_num_threads(3)
    with cell_threads(None) as count:
        assert count == 1 and set_threads(None) == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3
    with cell_threads(2):
        assert set_threads(None) == 2
        with cell_threads(None):
            assert set_threads(None) == 1
        assert set_threads(None) == 2
    assert set_threads(None) == 4  # out of every cell again: the usable cores


def test_bad_thread_count_is_a_one_line_error():
    with pytest.raises(SystemExit, match=r"--threads must be >= 1 and <= 1024, got 0"):
        set_threads(0)


def test_a_huge_thread_count_is_refused_before_torch_starts_threads():
    """Issue 19 re-probe: `train_rl --threads 1000000` started threads until the OS refused (every
    process of the user then failed to fork) and died with a segfault or a RuntimeError traceback."""
    with pytest.raises(SystemExit, match=r"--threads must be >= 1 and <= 1024, got 1000000"):
        set_threads(1_000_000)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("flag", "expected"), [(None, 1), (2, 2)])
def test_run_cells_in_process_gives_each_cell_the_grid_threads(monkeypatch, flag, expected):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    results = {}
    cells = [Cell("a", threads_seen), Cell("b", threads_seen)]
    failed = execution.run_cells(cells, results.__setitem__, jobs=1, progress=False, threads=flag)
    assert failed == [] and results == {k: {"threads": expected, "torch": expected} for k in "ab"}


@pytest.mark.slow
def test_run_cells_in_worker_processes_gives_each_cell_the_grid_threads():
    results = {}
    cells = [Cell(k, threads_seen) for k in "abc"]
    failed = execution.run_cells(cells, results.__setitem__, jobs=2, progress=False, threads=2)
    assert failed == [] and results == {k: {"threads": 2, "torch": 2} for k in "abc"}

"""The Ray backend of the grid scripts: same seeds give the same table as the local backend, and a
trial whose worker dies resumes from its last Ray checkpoint and ends with the same numbers.

One local Ray session (2 CPUs, no dashboard) is shared by the module: Ray starts in a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from prediction_checks import assert_rows_rebuild

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (CI installs it)")

from labelchain.experiments import compare_orderings, train_rl, tune  # noqa: E402
from labelchain.experiments.grid import execution, ray_backend  # noqa: E402
from labelchain.experiments.run import train_rl_args  # noqa: E402
from labelchain.experiments.compare_orderings import Args  # noqa: E402
from labelchain.experiments.reports.orderings import render_markdown  # noqa: E402
from labelchain.experiments.grid.cells import Cell  # noqa: E402
from labelchain.experiments.run import reporting  # noqa: E402
from labelchain.experiments.run.reporting import reporting_to  # noqa: E402

pytestmark = pytest.mark.slow  # Ray: minutes in all; `pytest -m 'not slow'` skips them

TESTS = Path(__file__).resolve().parent

LEARNERS = ["freq2rare", "rearrange", "combined"]
KILL_AT = ("rearrange", 20)  # the worker dies right after this learner's checkpoint at this update


@pytest.fixture(scope="module")
def ray_session():
    """Local Ray, 2 CPUs; workers can import this module (the dying cell below) and the experiments."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray_backend.ray_init(None, num_cpus=2)
    yield
    ray.shutdown()


def quick_args(tmp: Path, **changes) -> Args:
    """The quick emotions grid (one seed, 30 updates, checkpoints every 10), three learners, no peers."""
    settings = {"quick": True, "learners": LEARNERS, "peers": ["none"], "progress": False, **changes}
    return Args(runs_dir=str(tmp / "runs"), out_dir=str(tmp / "out"), **settings)


def table(results: dict) -> str:
    """The results table without what legitimately differs between runs (wall times, folders, commands)."""
    rows = [{**row, "wall_time_s": 0.0, "run_dir": None} for row in results["rows"]]
    cells = {key: {**cell, "command": "test"} for key, cell in results["cells"].items()}
    return render_markdown({**results, "rows": rows, "cells": cells, "command": "test"})


def metrics_by_row(results: dict) -> dict:
    return {(r["dataset"], r["seed"], r["method"]): (r["metrics"], r.get("val")) for r in results["rows"]}


@pytest.fixture(scope="module")
def local_and_ray(ray_session, tmp_path_factory):
    """compare_orderings --quick on both backends (Ray: the module's local Ray session)."""
    tmp = tmp_path_factory.mktemp("grid")
    local = json.loads(compare_orderings.main(quick_args(tmp / "local")).read_text())
    on_ray = json.loads(compare_orderings.main(quick_args(tmp / "ray", backend="ray", jobs=2)).read_text())
    return local, on_ray, tmp


def test_same_seeds_give_the_same_table_on_local_and_ray(local_and_ray):
    local, on_ray, tmp = local_and_ray
    assert len(local["rows"]) == len(LEARNERS) + 2  # + best_fixed and ensemble
    assert metrics_by_row(on_ray) == metrics_by_row(local)
    assert table(on_ray) == table(local)
    run_dirs = {row["run_dir"] for row in on_ray["rows"]}
    assert all(str(tmp / "ray" / "runs") in d for d in run_dirs)  # results land in our run folders
    assert all(Path(d, "freq2rare", "checkpoint.pt").is_file() for d in run_dirs)
    assert list((tmp / "ray" / "runs" / "ray").glob("grid_*/emotions_0"))  # the cell was a Tune trial
    for results, backend in ((local, "local"), (on_ray, "ray")):  # each row's saved predictions, either backend
        assert_rows_rebuild(results["rows"], tmp / backend / "out" / "predictions" / "orderings" / "emotions" / "seed0")


def dying_cell(marker: str, log: str, **cell):
    """compare_orderings.compute_cell, whose worker process is SIGKILLed once, right after KILL_AT's
    checkpoint went to Ray, having deleted its run folder first: only Ray's checkpoint can bring it back."""
    send = reporting._reporter

    def send_then_die(metrics: dict, run_dir: Path | None) -> None:
        send(metrics, run_dir)
        with open(log, "a") as handle:
            handle.write(
                json.dumps({"pid": os.getpid(), "learner": metrics["learner"], "update": metrics["update"]}) + "\n"
            )
        if run_dir is not None and (metrics["learner"], metrics["update"]) == KILL_AT and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            shutil.rmtree(run_dir)
            os.kill(os.getpid(), signal.SIGKILL)

    with reporting_to(send_then_die):
        return compare_orderings.compute_cell(**cell)


def test_a_killed_worker_resumes_from_its_last_checkpoint_with_the_same_result(local_and_ray, tmp_path):
    local, _, _ = local_and_ray
    args = compare_orderings.resolve_args(quick_args(tmp_path, backend="ray"))
    marker, log = tmp_path / "killed", tmp_path / "reports.jsonl"
    results = {"cells": {}, "rows": [], "skipped_peers": []}
    cell = Cell(
        "emotions:0",
        dying_cell,
        {"marker": str(marker), "log": str(log), "args": args, "dataset": "emotions", "seed": 0, "command": "test"},
    )
    failed = execution.run_cells(
        [cell],
        lambda _key, done: compare_orderings.merge_cell(results, done),
        backend="ray",
        storage_dir=args.runs_dir,
        progress=False,
    )
    assert failed == []
    assert marker.exists(), "the worker was never killed"
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    killed = int(marker.read_text())
    after = [(r["learner"], r["update"]) for r in reports if r["pid"] != killed]
    assert {r["pid"] for r in reports} == {killed, reports[-1]["pid"]}  # one restart, in a new process
    assert after[0] == ("rearrange", 30)  # resumed after the checkpoint at 20: not from scratch
    assert not any(learner == "freq2rare" for learner, _ in after)  # finished learners are not retrained
    assert metrics_by_row(results) == metrics_by_row(local)


def test_tune_search_writes_a_best_config_that_train_rl_reproduces(ray_session, tmp_path):
    args = tune.Args(
        dataset="emotions",
        learner="combined",
        samples=2,
        updates=20,
        eval_every=10,
        grace_period=1,
        runs_dir=str(tmp_path),
    )
    best_path = tune.main(args)
    report = json.loads((best_path.parent / "trials.json").read_text())
    trials, winner = report["trials"], report["winner"]
    assert len(trials) == 2 and all(t["error"] is None for t in trials)
    assert winner["best_val"] == max(t["best_val"] for t in trials)
    assert len({json.dumps(t["config"], sort_keys=True) for t in trials}) == 2  # two drawn configurations
    best = json.loads(best_path.read_text())
    for key in ("hidden_size", "dropout", "entropy_coef", "rl_weight"):
        assert best[key] == winner["config"][key]
    assert best["rl_lr"] == winner["config"]["lr"] and best["learners"] == ["rearrange", "combined"]
    assert len(list(best_path.parent.glob("emotions__tune-combined__0__*/combined/events.out.tfevents.*"))) == 2
    run_dir = train_rl.main(
        train_rl_args.cli_args(["--config", str(best_path), "--runs-dir", str(tmp_path / "again"), "--no-progress"])
    )  # what `train_rl.py --config` runs
    again = json.loads((run_dir / "metrics.json").read_text())["learners"]["combined"]["val"]["nDCG@3"]
    assert again == pytest.approx(winner["best_val"], abs=1e-12)  # same seed, same config: same best score


def test_a_prior_chain_grid_gives_the_same_table_on_local_and_ray(ray_session, tmp_path):
    """Issue 16: a prior chain's cell (OvR out-of-fold prior, shortlist 3) is one Ray Tune trial with the
    local backend's numbers; the prior is built once and read from the cache by the trial."""
    changes = {"learners": ["rearrange"], "prior": "ovr_logistic", "shortlist": 3}
    local = json.loads(compare_orderings.main(quick_args(tmp_path / "local", **changes)).read_text())
    on_ray = json.loads(compare_orderings.main(quick_args(tmp_path / "ray", backend="ray", **changes)).read_text())
    assert local["args"]["prior"] == on_ray["args"]["prior"] == "ovr_logistic" and local["args"]["shortlist"] == 3
    assert {row["method"] for row in local["rows"]} >= {"rearrange"}
    assert metrics_by_row(on_ray) == metrics_by_row(local)
    assert table(on_ray) == table(local)

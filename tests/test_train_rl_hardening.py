"""train_rl's guard rails: one-line errors, locked run folders, honest resumes, SIGTERM, full disks,
and the rule that picks the best fixed ordering."""

from __future__ import annotations

import errno
import math
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_train_rl_args
from interrupted_run import interrupt_long_run
import scipy.sparse as sp

from labelchain.envs.data.dataset import Dataset, Split
from helpers import read_scalars

from labelchain.experiments.run import folder as runs
from labelchain.experiments.run import setup as run_setup
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.report import best_fixed_ordering

from labelchain.experiments.run.folder import DiskFullError, RunLock, load_checkpoint
from labelchain.experiments.run.setup import check_splits
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.train_rl import main
from labelchain.experiments.run.train_rl_args import Args, resolve_args

TINY = tiny_train_rl_args(learners=["freq2rare"], ensemble=[], updates=6, hidden_size=8, eval_every=3)
SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_rl.py"


# ----------------------------------------------------------------------------- no data needed
def test_best_fixed_ordering_rule_on_hand_made_numbers():
    assert best_fixed_ordering({"freq2rare": 0.50, "rare2freq": 0.61, "always_random": 0.60}, "nDCG@3") == "rare2freq"
    assert best_fixed_ordering({"freq2rare": 0.61, "rare2freq": 0.61}, "nDCG@3") == "freq2rare"  # tie: earlier
    assert best_fixed_ordering({"freq2rare": math.nan, "rare2freq": 0.2}, "P@1") == "rare2freq"  # NaN never wins
    assert best_fixed_ordering({"freq2rare": 0.2, "rare2freq": math.nan}, "P@1") == "freq2rare"
    assert best_fixed_ordering({"freq2rare": math.nan, "rare2freq": math.nan}, "P@1") == "freq2rare"
    assert best_fixed_ordering({"freq2rare": 0.10, "rare2freq": 0.05}, "hamming_loss") == "rare2freq"  # lower wins
    with pytest.raises(ValueError, match="no fixed ordering"):
        best_fixed_ordering({}, "P@1")


def test_every_numeric_flag_is_range_checked_in_one_line():
    for changes, flag in (
        ({"lr": math.nan}, "--lr"),
        ({"seed": -1}, "--seed"),
        ({"rl_lr": math.inf}, "--rl-lr"),
        ({"updates": 0}, "--updates"),
        ({"rl_weight": 1.5}, "--rl-weight"),
        ({"val_fraction": 0.0}, "--val-fraction"),
        ({"entropy_coef": -0.1}, "--entropy-coef"),
        ({"stop_after_updates": 0}, "--stop-after-updates"),
        ({"reward_mode": "x"}, "--reward-mode"),
    ):
        with pytest.raises(ArgsError, match=flag) as info:
            resolve_args(replace(TINY, **changes))
        assert "\n" not in str(info.value)
    parsed = parse_args(Args, ["--lr", "nan", "--seed", "-1"])
    with pytest.raises(
        ArgsError, match=r"--lr must be a finite number > 0, got nan; --seed must be >= 0 and <= 4294967295, got -1"
    ):
        resolve_args(parsed)


def tiny(train_labels: list[list[int]], n_test: int = 2) -> Dataset:
    def split(labels: list[list[int]]) -> Split:
        Y = sp.lil_matrix((len(labels), 3), dtype=bool)
        for row, ids in enumerate(labels):
            for label in ids:
                Y[row, label] = True
        return Split(np.ones((len(labels), 2), dtype=np.float32), Y.tocsr())

    return Dataset("tiny", split(train_labels), split([[0]] * n_test), ["a", "b", "c"], ["x", "y"])


def test_splits_without_documents_or_labels_are_refused(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(run_setup, "load_dataset", lambda *a, **k: tiny([[]] * 20))
    with pytest.raises(ArgsError, match="no training document has a label"):
        main(replace(TINY, runs_dir=str(tmp_path)))
    monkeypatch.setattr(run_setup, "load_dataset", lambda *a, **k: tiny([[0]] * 20, n_test=0))
    with pytest.raises(ArgsError, match="the test split has no documents"):
        main(replace(TINY, runs_dir=str(tmp_path)))
    monkeypatch.setattr(run_setup, "load_dataset", lambda *a, **k: tiny([]))
    with pytest.raises(ArgsError, match="the train split has no documents"):
        main(replace(TINY, runs_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []  # no run folder for a run that cannot start
    some_empty = tiny([[0], [], [1, 2], [0]] * 5)
    with pytest.warns(UserWarning, match="25.0% of the training documents have no label"):
        check_splits("tiny", some_empty.train, some_empty.test)


def test_unwritable_runs_folder_fails_before_loading_data(monkeypatch, tmp_path: Path):
    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded data before checking the runs folder")

    monkeypatch.setattr(run_setup, "load_dataset", must_not_load)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ArgsError, match="--runs-dir .*a_file/runs: cannot write there"):
        main(replace(TINY, runs_dir=str(tmp_path / "a_file" / "runs")))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json_args(TINY))
    with RunLock(tmp_path / "run"), pytest.raises(ArgsError, match=f"{tmp_path / 'run'} is in use"):
        main(Args(resume=str(tmp_path / "run")))  # a locked folder is refused before loading too


def json_args(args: Args) -> str:
    import json
    from dataclasses import asdict

    return json.dumps({"args": asdict(args)})


# ----------------------------------------------------------------------------- with data
@pytest.mark.needs_data
@pytest.mark.slow
def test_resume_refuses_changed_flags_and_accepts_safe_ones(tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=2))
    with pytest.raises(ArgsError, match=r"--updates \(run: 6, given: 9\), --lr \(run: 0.001, given: 0.01\)"):
        main(Args(resume=str(run_dir), updates=9, lr=0.01))
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 2  # nothing ran
    main(Args(resume=str(run_dir), progress=False, stop_after_updates=1))  # safe flags only
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 3
    main(replace(TINY, resume=str(run_dir)))  # the run's own values, given again, are fine
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.needs_data
@pytest.mark.slow
def test_a_locked_run_folder_is_refused_then_free_again(tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=2))
    with RunLock(run_dir):  # another process training there
        with pytest.raises(ArgsError, match=f"{run_dir} is in use by another train_rl process"):
            main(Args(resume=str(run_dir), progress=False))
    main(Args(resume=str(run_dir), progress=False))  # released: the resume goes ahead
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.needs_data
@pytest.mark.slow
def test_learner_restarted_without_checkpoint_has_one_clean_curve(tmp_path: Path):
    """Killed before its first checkpoint: the restart replaces the old events instead of adding to them."""
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=4))
    (run_dir / "freq2rare" / "checkpoint.pt").unlink()  # as if killed before the first checkpoint
    main(Args(resume=str(run_dir), progress=False))
    scalars = read_scalars(run_dir / "freq2rare")
    assert [s for s, _ in scalars["charts/episodic_return"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars["eval/P@1"]] == [0, 3, 6]
    assert len(list((run_dir / "freq2rare").glob("events.out.tfevents.*"))) == 1


@pytest.mark.needs_data
@pytest.mark.slow
def test_dataset_given_as_a_folder_names_the_run_by_the_folder(tmp_path: Path, data_dir: Path):
    folder = data_dir / "mulan" / "emotions"
    run_dir = main(replace(TINY, dataset=f"{folder}/", runs_dir=str(tmp_path), updates=2, eval_every=1))
    assert run_dir.name.startswith("emotions__freq2rare__0__")
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.needs_data
@pytest.mark.slow
def test_full_disk_while_checkpointing_is_one_clear_line(monkeypatch, tmp_path: Path):
    def disk_full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "atomic_write", disk_full)
    with pytest.raises(DiskFullError) as info:
        main(replace(TINY, runs_dir=str(tmp_path)))
    message = str(info.value)
    assert "checkpoint.pt: the disk is full (ENOSPC)" in message and "\n" not in message
    (run_dir,) = tmp_path.iterdir()
    assert f"--resume {run_dir}" in message


@pytest.mark.needs_data
@pytest.mark.slow
def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path: Path):
    returncode, output = interrupt_long_run(tmp_path, signal.SIGTERM)
    assert returncode == 130, output
    assert "SIGTERM: finishing the current update" in output
    (run_dir,) = tmp_path.iterdir()
    assert f"resume with: python experiments/train_rl.py --resume {run_dir}" in output
    checkpoint = load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")
    assert not checkpoint["finished"] and 0 < checkpoint["progress"]["update"] < 100000

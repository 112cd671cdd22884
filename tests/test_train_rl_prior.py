"""train_rl with a peer's prior: flags refused in one line, a tiny shortlisted run that trains, saves
its prior architecture and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_runs import tiny_train_rl_args

from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.folder import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, load_checkpoint
from labelchain.experiments.run.train_rl_args import resolve_args
from labelchain.experiments.train_rl import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABELCHAIN_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shortlist": 3}, "--shortlist needs --prior"),
        ({"prior": "svm"}, "--prior must be one of"),
        ({"prior": "ovr_logistic", "prior_scale": "both"}, "--prior-scale must be one of"),
        ({"prior": "ovr_logistic", "guidance": "bcl"}, "--prior needs --output flat, no --guidance"),
        ({"prior": "ovr_logistic", "shortlist": -1}, "--shortlist must be >= 0"),
    ],
)
def test_prior_flags_are_refused_in_one_line(changes, message) -> None:
    with pytest.raises(ArgsError, match=message) as error:
        resolve_args(tiny_train_rl_args(**changes))
    assert "\n" not in str(error.value)


def test_shortlist_larger_than_the_label_count_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ArgsError, match=r"--shortlist 7: emotions has only 6 labels"):
        main(tiny_train_rl_args(prior="ovr_logistic", shortlist=7, runs_dir=str(tmp_path)))
    assert not any(tmp_path.glob("emotions__*"))


def test_a_shortlisted_prior_run_trains_saves_its_architecture_and_resumes(tmp_path: Path) -> None:
    args = tiny_train_rl_args(
        prior="ovr_logistic", prior_scale="per_label", shortlist=3, runs_dir=str(tmp_path), stop_after_updates=5
    )
    run_dir = main(args)
    assert not (run_dir / METRICS_FILE).exists()  # stopped by the budget: resumable
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    assert saved["args"]["prior"] == "ovr_logistic" and saved["args"]["shortlist"] == 3
    assert saved["derived"]["n_features"] == 72  # text features: the prior's 6 columns are not counted
    resumed = main(tiny_train_rl_args(resume=str(run_dir), runs_dir=str(tmp_path)))
    assert resumed == run_dir and (run_dir / METRICS_FILE).exists()
    for learner in ("freq2rare", "rearrange", "combined"):
        config = load_checkpoint(run_dir / learner / CHECKPOINT_FILE)["policy_config"]
        assert config["prior"] == "per_label" and config["shortlist"] is True and config["n_features"] == 72
    report = json.loads((run_dir / METRICS_FILE).read_text())
    assert set(report["learners"]) == {"freq2rare", "rearrange", "combined"} and "ensemble" in report

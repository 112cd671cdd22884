"""train_rl with --guidance bcl and --hide-train-labels, end to end on emotions with tiny budgets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_train_rl_args

from labelchain.experiments.run.folder import load_checkpoint
from labelchain.experiments.run.setup import load_run_data
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.train_rl import main

TINY = tiny_train_rl_args(guidance="bcl", clusters=3, hide_train_labels=0.5)


@pytest.mark.slow
def test_guided_pu_run_end_to_end(tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path)))
    report = json.loads((run_dir / "metrics.json").read_text())
    for name in ("freq2rare", "rearrange", "combined"):
        test = report["learners"][name]["test"]
        assert {"PSP@1", "PSP@5", "PSnDCG@3", "rare_f1"} <= set(test)
        few_shot = report["learners"][name]["few_shot"]
        assert few_shot["0shot_labels"] == 0 and few_shot["0shot_micro_f1"] is None  # every label seen
        assert few_shot["10shot_labels"] >= 0 and set(few_shot) >= {"1shot_macro_f1", "5shot_micro_f1"}
        state = load_checkpoint(run_dir / name / "checkpoint.pt")
        assert state["policy_config"]["n_clusters"] == 3
    assert "ensemble" in report
    config = json.loads((run_dir / "config.json").read_text())
    assert config["args"]["guidance"] == "bcl" and config["derived"]["n_features"] == 72


@pytest.mark.needs_data
def test_run_data_hides_train_labels_and_appends_gold_clusters():
    plain = load_run_data(replace(TINY, guidance="none", hide_train_labels=0.0))
    data = load_run_data(TINY)
    assert data.train.X.shape[1] == plain.train.X.shape[1] + 3 and data.val.X.shape == plain.val.X.shape
    assert data.train.Y.sum() < plain.train.Y.sum()  # labels hidden ...
    assert (data.train.Y > plain.train.Y).nnz == 0  # ... never added
    assert (data.test.Y != plain.test.Y).nnz == 0  # test keeps every label
    assert data.train.X[:, -3:].sum(axis=1).min() >= 1  # every training document has a gold cluster


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"guidance": "xlgen"}, "--guidance"),
        ({"clusters": 0}, "--clusters"),
        ({"hide_train_labels": 1.5}, "--hide-train-labels"),
        ({"guidance_weight": -1.0}, "--guidance-weight"),
        ({"clusters": 7}, "--clusters 7"),
        ({"guidance_mix": 2.0}, "--guidance-mix"),
    ],
)
@pytest.mark.needs_data
def test_bad_guidance_flags_are_named(tmp_path: Path, change, flag):
    with pytest.raises(ArgsError, match=flag):
        main(replace(TINY, runs_dir=str(tmp_path), **change))


@pytest.mark.slow
def test_overlapping_clusters_from_a_first_guided_policy(tmp_path: Path):
    first = main(replace(TINY, runs_dir=str(tmp_path), learners=["rearrange"], ensemble=[]))
    source = str(first / "rearrange" / "policy")
    one = load_run_data(replace(TINY, overlap_from=source, overlap_lambda=1)).train.X[:, -3:]
    two = load_run_data(replace(TINY, overlap_from=source, overlap_lambda=3)).train.X[:, -3:]
    assert set(np.unique(two)) <= {0.0, 1.0} and two.sum(axis=1).min() >= 1
    assert two.sum() >= one.sum()  # more clusters per label -> at least as many gold clusters
    with pytest.raises(ArgsError, match="--overlap-from needs --guidance bcl"):
        main(replace(TINY, runs_dir=str(tmp_path), guidance="none", overlap_from=source))
    with pytest.raises(ArgsError, match="--overlap-from .*not a bcl or mcg policy"):
        load_run_data(replace(TINY, clusters=4, overlap_from=source))

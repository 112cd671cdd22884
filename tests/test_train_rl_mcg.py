"""train_rl with --guidance mcg (cluster tokens, then labels), end to end on emotions with tiny budgets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_train_rl_args
from interrupted_run import deterministic_part

from labelchain.experiments.run.setup import load_run_data
from helpers import read_scalars

from labelchain.experiments.run.folder import load_checkpoint, load_policy, save_checkpoint
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.train_rl import main
from labelchain.experiments.run.train_rl_args import Args

TINY = tiny_train_rl_args(
    learners=["always_random", "rearrange", "ppo", "combined"], guidance="mcg", clusters=3, mcg_restrict=True
)


@pytest.mark.slow
def test_mcg_run_end_to_end(tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path)))
    report = json.loads((run_dir / "metrics.json").read_text())
    for name in TINY.learners:
        assert 0.0 <= report["learners"][name]["test"]["example_f1"] <= 1.0
        config = load_checkpoint(run_dir / name / "checkpoint.pt")["policy_config"]
        assert config["n_labels"] == 6 + 3 and config["mcg"]["restrict"] and config["mcg"]["n_clusters"] == 3
        policy = load_policy(run_dir / name / "policy")
        assert policy.mcg is not None and policy.label_columns == 6
    assert "ensemble" in report and report["floor"]["test"]["P@1"] > 0


@pytest.mark.needs_data
def test_run_data_augments_train_labels_only():
    plain = load_run_data(replace(TINY, guidance="none", mcg_restrict=False))
    data = load_run_data(TINY)
    assert data.mcg is not None and data.mcg.restrict
    assert data.train.Y.shape[1] == 6 + 3 and data.val.Y.shape[1] == 6 and data.test.Y.shape[1] == 6
    assert (data.train.Y[:, :6] != plain.train.Y).nnz == 0 and (data.label_train.Y != plain.train.Y).nnz == 0
    assert np.asarray(data.train.Y[:, 6:].sum(axis=1)).min() >= 1  # every labelled document has a cluster
    assert data.max_steps == plain.max_steps + 3  # room for the cluster tokens (emotions: 3 labels at most)


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"guidance": "none"}, "--mcg-restrict needs --guidance mcg"),
        ({"output": "tree"}, "--guidance mcg needs --output flat"),
        ({"clusters": 7}, "--clusters 7"),
    ],
)
@pytest.mark.needs_data
def test_bad_mcg_flags_are_named(tmp_path: Path, change, flag):
    with pytest.raises(ArgsError, match=flag):
        main(replace(TINY, runs_dir=str(tmp_path), **change))


@pytest.mark.slow
def test_overlapping_clusters_from_a_first_mcg_policy(tmp_path: Path):
    first = main(replace(TINY, runs_dir=str(tmp_path), learners=["rearrange"], ensemble=[]))
    source = str(first / "rearrange" / "policy")
    one = load_run_data(replace(TINY, overlap_from=source, overlap_lambda=1)).mcg
    three = load_run_data(replace(TINY, overlap_from=source, overlap_lambda=3)).mcg
    assert one is not None and three is not None
    assert one.membership.sum() == 6 and three.membership.sum() >= one.membership.sum()


@pytest.mark.slow
def test_interrupted_mcg_run_resumes_to_the_same_metrics(tmp_path: Path):
    """Stopped inside rearrange, then inside ppo: the resumed run rebuilds the MCG spec from its config."""
    args = replace(TINY, learners=["freq2rare", "rearrange", "ppo"], ensemble=["rearrange", "ppo"], updates=6)
    reference = main(replace(args, runs_dir=str(tmp_path / "reference")))
    run_dir = main(replace(args, runs_dir=str(tmp_path / "resumed"), stop_after_updates=9))  # rearrange at 3
    assert not (run_dir / "metrics.json").exists()
    assert load_checkpoint(run_dir / "rearrange" / "checkpoint.pt")["progress"]["update"] == 3
    main(Args(resume=str(run_dir), stop_after_updates=5, progress=False))  # rearrange ends, ppo stops at 2
    assert load_checkpoint(run_dir / "ppo" / "checkpoint.pt")["progress"]["update"] == 2
    main(Args(resume=str(run_dir), progress=False))
    assert deterministic_part(run_dir) == deterministic_part(reference)
    for name in args.learners:
        assert load_checkpoint(run_dir / name / "checkpoint.pt")["policy_config"]["mcg"]["n_clusters"] == 3
        resumed, whole = read_scalars(run_dir / name), read_scalars(reference / name)
        assert [s for s, _ in resumed["charts/episodic_return"]] == list(range(1, 7))  # each step once
        assert resumed["charts/episodic_return"] == whole["charts/episodic_return"]
        assert resumed["eval/P@1"] == whole["eval/P@1"]


@pytest.mark.needs_data
def test_resume_refuses_a_checkpoint_trained_on_other_clusters(tmp_path: Path):
    """The run rebuilds its clusters from the flags; a checkpoint whose membership differs is refused."""
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), learners=["rearrange"], ensemble=[], stop_after_updates=2))
    path = run_dir / "rearrange" / "checkpoint.pt"
    state = load_checkpoint(path)
    mcg = state["policy_config"]["mcg"]
    mcg["clusters_of_label"] = [[(c + 1) % 3 for c in clusters] for clusters in mcg["clusters_of_label"]]
    save_checkpoint(path, state)
    with pytest.raises(ArgsError, match="--resume: rearrange's checkpoint was trained on other --guidance mcg"):
        main(Args(resume=str(run_dir), progress=False))
    assert load_checkpoint(path)["progress"]["update"] == 2  # nothing ran

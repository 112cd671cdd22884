"""experiments/strength.py with train_rl's --prior flags (issue 16): a tiny shortlisted cell end to end
(rows record the prior, chain outputs stay inside each document's shortlist), the one-line refusals,
resume never mixing prior and plain cells, and the ECC peer in the strength report."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from labelchain.envs.data.loading import load_dataset
from labelchain.envs.predictions import load_predictions
from labelchain.envs.shortlist import shortlist_from_scores
from labelchain.experiments import strength
from labelchain.experiments.grid.results_file import ResultsFile, save_results
from labelchain.experiments.grid.strength_chains import prior_setting
from labelchain.experiments.reports.strength import render_markdown
from labelchain.experiments.run.setup import prior_top_m
from test_strength import tiny_args

CHAIN_ROWS = ("freq2rare", "rare2freq", "fixed_random", "always_random", "rearrange", "combined", "best_fixed")
PRIOR = {"prior": "ovr_logistic", "shortlist": 3}


def plain_args(tmp: Path, **changes) -> strength.Args:
    """test_strength's tiny cell on the small preset (the prior needs a flat output layer)."""
    return tiny_args(tmp, **{"preset": "small", **changes})


def prior_args(tmp: Path, **changes) -> strength.Args:
    return plain_args(tmp, **{**PRIOR, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strength_prior")
    path = strength.main(prior_args(tmp, peers=["ovr_logistic", "ecc"]))
    return tmp, json.loads(path.read_text())


@pytest.mark.needs_data
@pytest.mark.slow
def test_every_chain_row_trains_on_the_prior_and_records_it(run) -> None:
    _, results = run
    rows = {r["method"]: r for r in results["rows"]}
    peers = {"ovr_logistic", "ecc", "label_frequency"}
    assert set(rows) == {*CHAIN_ROWS, "ensemble_chains", "ensemble_chains_peers", *peers}
    assert rows["ecc"]["kind"] == "peer" and rows["ecc"]["config"]["hyper"]["C"] in (0.1, 1.0, 10.0)
    assert rows["ensemble_chains_peers"]["config"]["members"][-2:] == ["ovr_logistic", "ecc"]
    for name in (*CHAIN_ROWS, "ensemble_chains", "ensemble_chains_peers"):
        assert rows[name]["prior"] == PRIOR, name
    for name in CHAIN_ROWS:  # rules chosen on validation, from the one nDCG@5 checkpoint
        rules = rows[name]["config"]["rules"]
        assert rules["ranking_metric"] == "nDCG@5" and rules["set_metric"] == "example_f1"
        assert rows[name]["config"]["checkpoints"] == ["nDCG@5"]
    assert not any("prior" in rows[name] for name in peers)
    assert results["cells"]["emotions:0"]["config"]["prior"] == "ovr_logistic"
    assert results["cells"]["emotions:0"]["config"]["shortlist"] == 3
    best = rows["best_fixed"]  # 16 validation docs: chosen by 2 folds of prior chains
    assert best["selection"]["rule"].startswith("2-fold") and best["metrics"] == rows[best["chosen"]]["metrics"]
    text = render_markdown(results)
    assert "| ecc |" in text and "ensemble_chains_peers vs ecc | P@1 |" in text
    assert "Chain rows (learners, best_fixed, ensembles) on a peer's prior: prior ovr_logistic, shortlist 3." in text


@pytest.mark.needs_data
@pytest.mark.slow
def test_chain_outputs_stay_inside_each_documents_shortlist(run) -> None:
    """Every predicted label and every score above the row's floor is one of the document's top 3 prior
    labels (the prior of the 160 training documents used, as the cell built it; read from the cache)."""
    from labelchain.experiments.prior_cache import cached_prior

    tmp, _ = run
    ds = load_dataset("emotions")
    used = dataclasses.replace(ds, train=ds.train.subset(np.arange(160)))
    prior = cached_prior("ovr_logistic", used, seed=0, val_fraction=0.1, top_m=prior_top_m(ds.n_labels))
    shortlist = shortlist_from_scores(prior.test, 3).toarray()
    assert shortlist.sum(axis=1).tolist() == [3] * len(ds.test)
    folder = tmp / "predictions" / "strength" / "emotions" / "seed0"
    for name in CHAIN_ROWS:
        pred = load_predictions(folder / f"{name}.npz")
        assert pred.top_ids.shape == (len(ds.test), ds.n_labels) and pred.pred_sets is not None
        assert not (pred.pred_sets.toarray() & ~shortlist).any(), name
        above_floor = pred.top_scores > pred.top_scores.min(axis=1, keepdims=True)
        rows, positions = np.nonzero(above_floor)
        assert len(rows) >= len(ds.test)  # the chains do rank labels, not only the floor
        assert shortlist[rows, pred.top_ids[rows, positions]].all(), name
    peer = load_predictions(folder / "ovr_logistic.npz")  # the peer alone ranks all six labels
    assert (peer.pred_sets.toarray() & ~shortlist).any()


@pytest.mark.needs_data
@pytest.mark.slow
def test_resume_never_reuses_a_cell_of_other_prior_settings(run, tmp_path, monkeypatch, capsys) -> None:
    tmp, results = run
    strength.main(prior_args(tmp, peers=["ovr_logistic", "ecc"]))
    assert "0 cells to run (1 reused)" in capsys.readouterr().out

    class Rerun(Exception):
        pass

    def refuse(**_):
        raise Rerun

    monkeypatch.setattr(strength, "compute_cell", refuse)
    for changed in (plain_args(tmp), prior_args(tmp, prior_scale="per_label"), prior_args(tmp, shortlist=2)):
        with pytest.raises(Rerun):
            strength.main(changed)
        assert "1 cells to run (0 reused)" in capsys.readouterr().out
    # the same file with its cell made by the plain grid: reused by the plain grid only
    cell = {**results["cells"]["emotions:0"], "config": strength.cell_config(plain_args(tmp_path))}
    plain = {**results, "cells": {"emotions:0": cell}}
    save_results(tmp_path / "strength.json", ResultsFile.from_payload(plain, "strength"))
    strength.main(plain_args(tmp_path))
    assert "0 cells to run (1 reused)" in capsys.readouterr().out
    with pytest.raises(Rerun):
        strength.main(prior_args(tmp_path))


def test_prior_setting_names_only_the_flags_that_differ() -> None:
    """Plain cells keep the config the grid saved before the flags existed (no prior keys)."""
    args = plain_args(Path("unused"))
    assert prior_setting(args) == {} and not {"prior", "prior_scale", "shortlist"} & set(strength.cell_config(args))
    assert prior_setting(replace(args, prior_scale="per_label")) == {}  # no prior: the scale means nothing
    assert prior_setting(replace(args, label_history=False)) == {"label_history": False}
    assert prior_setting(prior_args(Path("unused"), prior_scale="per_label")) == {**PRIOR, "prior_scale": "per_label"}
    assert strength.resolve_preset(prior_args(Path("unused"))).policy.shortlist is True
    assert strength.resolve_preset(args).policy.prior == "none"


def test_the_prior_flags_are_train_rls() -> None:
    from labelchain.experiments.run.config import PRIOR_KNOBS, TrainKnobs

    ours = {f.name: f for f in dataclasses.fields(strength.Args)}
    theirs = {f.name: f for f in dataclasses.fields(TrainKnobs)}
    for name in PRIOR_KNOBS:
        assert (ours[name].default, ours[name].metadata) == (theirs[name].default, theirs[name].metadata)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"shortlist": 3}, r"--shortlist needs --prior"),
        ({"prior": "knn"}, r"--prior must be one of \('none', 'ovr_logistic', 'omikuji'\), got 'knn'"),
        ({"prior": "ovr_logistic", "prior_scale": "both"}, r"--prior-scale must be one of"),
        ({"prior": "ovr_logistic", "shortlist": -1}, r"--shortlist must be >= 0, got -1"),
        ({"prior": "ovr_logistic", "shortlist": 7}, r"^--shortlist 7: emotions has only 6 labels$"),
        ({"peers": ["ovr_logistic", "knn"]}, r"--peers must be distinct names from"),
        ({"peers": ["ecc", "ecc"]}, r"--peers must be distinct names from"),
    ],
)
def test_bad_prior_flags_are_one_line_errors_before_training(tmp_path, monkeypatch, change, words) -> None:
    monkeypatch.setattr(strength, "compute_cell", lambda **_: pytest.fail("trained despite a bad flag"))
    with pytest.raises(SystemExit, match=words):
        strength.main(plain_args(tmp_path, **change))
    assert not (tmp_path / "strength.json").exists()


def test_a_prior_on_a_preset_without_a_flat_output_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(strength.PRESETS, "small_tree", strength.PRESETS["small"].changed(output="tree"))
    with pytest.raises(SystemExit, match="--prior needs a flat output layer; preset small_tree has tree"):
        strength.main(prior_args(tmp_path, preset="small_tree"))


def test_ecc_is_a_strength_peer_with_its_own_rows_and_verdicts() -> None:
    assert "ecc" in strength.PEER_CHOICES and "label_frequency" not in strength.PEER_CHOICES
    rows = [
        {"dataset": "d", "seed": 0, "method": method, "kind": kind, "metrics": {m: value for m in METRICS}}
        | {"wall_time_s": 1.0}
        for method, kind, value in (
            ("ensemble_chains_peers", "ensemble", 0.6),
            ("ovr_logistic", "peer", 0.5),
            ("ecc", "peer", 0.7),
            ("label_frequency", "floor", 0.1),
        )
    ]
    text = render_markdown({"rows": rows})
    table = text.split("## Goals")[0]
    assert table.index("| ovr_logistic |") < table.index("| ecc |") < table.index("| label_frequency |")
    assert (
        "| the ensemble beats every peer on the ranking metrics | d | ensemble_chains_peers vs ecc | P@1 | fails: -10.00 points"
        in text
    )


METRICS = ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "example_f1", "micro_f1", "macro_f1")

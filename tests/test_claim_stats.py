"""labelchain.experiments.reports.claim_stats / restate_claims: report sections from rows, bootstrap entries from a loader,
and the committed reports re-render from their JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from labelchain.envs.stats import MethodPredictions
from labelchain.experiments.reports.claim_stats import (
    BETTER_PEER,
    across_datasets_markdown,
    attach_bootstrap,
    bootstrap_markdown,
    seed_means,
    seed_t_interval,
    with_better_peer,
)
from labelchain.experiments.reports.orderings import TABLE_METRICS
from labelchain.experiments.restate_claims import RESULTS, gap_intervals, reports


def _row(dataset: str, method: str, seed: int, value: float) -> dict:
    return {"dataset": dataset, "method": method, "seed": seed, "metrics": {m: value for m in TABLE_METRICS}}


def test_seed_means_skip_nan_and_better_peer_takes_the_best():
    rows = [_row("d", "a", 0, 0.2), _row("d", "a", 1, 0.4), _row("d", "p", 0, math.nan), _row("d", "q", 0, 0.1)]
    table = seed_means(rows, "P@1")
    assert table == {"d": {"a": pytest.approx(0.3), "q": 0.1}}
    assert with_better_peer(table, ("p", "q"), "P@1")["d"][BETTER_PEER] == 0.1
    assert with_better_peer({"d": {"p": 0.2, "q": 0.1}}, ("p", "q"), "hamming_loss")["d"][BETTER_PEER] == 0.1


def test_seed_t_interval_by_hand():
    # mean 2, sd 1, n 3: half width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    mean, low, high = seed_t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert seed_t_interval([0.5]) == (0.5, 0.5, 0.5)


def test_across_datasets_section_on_a_hand_table():
    """Five datasets where a > b > c everywhere: mean ranks 1, 2, 3; a beats c on all five (exact p 2/32)."""
    rows = [_row(f"d{i}", m, 0, v + 0.01 * i) for i in range(5) for m, v in (("a", 0.5), ("b", 0.4), ("c", 0.3))] + [
        _row("d0", "late", 0, 0.9)
    ]
    text = "\n".join(across_datasets_markdown(rows, ["P@1"], None, [("a", "c"), ("b", "c")], "cd_x"))
    assert "| P@1 | 5 | 3 | 10.00 (0.007) |" in text  # chi2 = 12*5/12 (1+4+9 - 12) = 10
    assert "a 1.00, b 2.00, c 3.00 | `analysis/figures/cd_x_P1.png` |" in text
    assert "Dropped (missing on some dataset): late." in text
    # CD for k = 3, N = 5: 2.343 sqrt(12 / 30) = 1.48; a and c are 2 ranks apart, the neighbours 1
    assert "more than CD (Nemenyi, α = 0.05; better first): P@1: a > c." in text
    assert "| P@1 | a vs c | 5 | 5/0 | +20.00 | 0.062 | 0.125 | not significant |" in text
    assert "- a vs c: survives on no metric." in text and "With 5 datasets no p can be below 0.0625." in text
    one = across_datasets_markdown([_row("d0", "a", 0, 0.5)], ["P@1"], None, [])
    assert "Only 1 dataset (d0): tests across datasets need at least two" in "\n".join(one)


def test_attach_bootstrap_uses_the_loader_and_renders_intervals():
    """Two seeds x 4 documents: a ranks the gold label first everywhere, b on half the documents."""
    gold = np.zeros((4, 6), dtype=int)
    gold[:, 0] = 1
    first = np.tile(np.arange(6), (4, 1))
    half = first.copy()
    half[:2] = [1, 0, 2, 3, 4, 5]
    saved = {"a": MethodPredictions(first), "b": MethodPredictions(half)}
    rows = [_row("toy", m, s, 0.5) for m in ("a", "b") for s in (0, 1)] + [_row("other", "a", 0, 0.5)]
    results = {"rows": rows}

    def load(dataset, seed, method):
        return (gold, saved[method]) if dataset == "toy" else None

    entries = attach_bootstrap(results, load, [("a", "b")], ["P@1"], resamples=200)
    assert len(entries) == 1 and results["bootstrap"] == entries
    entry = entries[0]
    assert (entry["dataset"], entry["b_method"], entry["difference"], entry["seeds_agreeing"]) == ("toy", "b", 0.5, 2)
    assert 0.0 <= entry["low"] <= 0.5 <= entry["high"] <= 1.0
    text = "\n".join(bootstrap_markdown(results, [("a", "b")], ["P@1"]))
    assert f"| toy | a vs b | +50.00 [{100 * entry['low']:+.2f}, {100 * entry['high']:+.2f}] (2/2)" in text
    assert "No saved predictions for any named pair (no interval yet): other." in text


def test_attach_bootstrap_refuses_pairs_scored_on_other_gold():
    gold = np.eye(6, dtype=int)
    other = np.roll(gold, 1, axis=1)
    pred = MethodPredictions(np.tile(np.arange(6), (6, 1)))

    def load(dataset, seed, method):
        return (gold if method == "a" else other, pred)

    rows = [_row("toy", m, 0, 0.5) for m in ("a", "b")]
    with pytest.raises(ValueError, match="toy seed 0: a and b were scored on different gold labels"):
        attach_bootstrap({"rows": rows}, load, [("a", "b")], ["P@1"])


def test_gap_intervals_prefer_bootstrap_entries():
    rows = [_row("d", "best_fixed", s, 0.5) for s in (0, 1)] + [
        _row("d", "combined", 0, 0.6),
        _row("d", "combined", 1, 0.8),
    ]
    mean, low, high, kind = gap_intervals({"rows": rows}, "d", "combined", "P@1")
    assert (mean, kind) == (pytest.approx(0.2), "t, 2 seeds") and low < 0.2 < high
    entry = {
        "dataset": "d",
        "a": "combined",
        "b": "best_fixed",
        "metric": "P@1",
        "difference": 0.2,
        "low": 0.1,
        "high": 0.3,
    }
    assert gap_intervals({"rows": rows, "bootstrap": [entry]}, "d", "combined", "P@1") == (0.2, 0.1, 0.3, "bootstrap")


@pytest.mark.parametrize("name", ["orderings", "strength", "guidance", "trees"])
def test_committed_reports_rerender_from_their_json(name):
    render = reports()[name][0]
    assert render(json.loads((RESULTS / f"{name}.json").read_text())) == (RESULTS / f"{name}.md").read_text()


def _saved_grid(tmp_path, predictions, hashes=("h1", "h1")):
    """A grid results file whose cell toy:0 names a folder holding a.npz and b.npz (envs.predictions)."""
    rng = np.random.default_rng(0)
    gold = (rng.random((40, 7)) < 0.3).astype(int)
    scores = {"a": rng.random((40, 7)) + 0.5 * gold, "b": rng.random((40, 7)) + 0.2 * gold}
    folder = tmp_path / "predictions" / "orderings" / "toy" / "seed0"
    for (method, s), digest in zip(scores.items(), hashes, strict=True):
        saved = predictions.from_outputs(
            method, gold, s, (s > 1.0).astype(int), dataset="toy", dataset_hash=digest, seed=0
        )
        predictions.save_predictions(folder / f"{method}.npz", saved)
    rows = [_row("toy", m, 0, 0.5) for m in ("a", "b")]
    return {"rows": rows, "cells": {"toy:0": {"predictions": "predictions/orderings/toy/seed0"}}}, gold, scores


def test_grid_loader_reads_saved_predictions(tmp_path):
    predictions = pytest.importorskip("labelchain.envs.predictions")  # h18preds' saved predictions
    from labelchain.envs.metrics import evaluate
    from labelchain.experiments.restate_claims import grid_loader

    results, gold, scores = _saved_grid(tmp_path, predictions)
    attach_bootstrap(
        results, grid_loader(results, tmp_path, "orderings"), [("a", "b")], ["P@1", "micro_f1"], resamples=100
    )
    by_metric = {e["metric"]: e for e in results["bootstrap"]}
    ea = evaluate(gold, scores["a"], (scores["a"] > 1.0).astype(int))
    eb = evaluate(gold, scores["b"], (scores["b"] > 1.0).astype(int))
    for metric in ("P@1", "micro_f1"):
        assert by_metric[metric]["difference"] == pytest.approx(ea[metric] - eb[metric], abs=1e-12)


def test_grid_loader_finds_the_grids_common_folder_without_a_cell_entry(tmp_path):
    predictions = pytest.importorskip("labelchain.envs.predictions")
    from labelchain.experiments.restate_claims import grid_loader

    results, _, _ = _saved_grid(tmp_path, predictions)
    del results["cells"]  # variant grids and strength keep rows only
    assert attach_bootstrap(results, grid_loader(results, tmp_path, "orderings"), [("a", "b")], ["P@1"])
    assert not attach_bootstrap(results, grid_loader(results, tmp_path, "trees"), [("a", "b")], ["P@1"])


def test_grid_loader_refuses_another_dataset_version(tmp_path):
    predictions = pytest.importorskip("labelchain.envs.predictions")
    from labelchain.experiments.restate_claims import grid_loader

    results, _, _ = _saved_grid(tmp_path, predictions, hashes=("h1", "h2"))
    with pytest.raises(ValueError, match=r"b.npz: dataset hash h2 differs from h1 of .*a.npz"):
        attach_bootstrap(results, grid_loader(results, tmp_path, "orderings"), [("a", "b")], ["P@1"])

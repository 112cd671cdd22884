"""experiments/prior.py and experiments/reports/prior.py: issue 16's goal count, differences, missing
cells, the validation choice and the bootstrap over two grids' saved predictions, on hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelchain.envs.predictions import from_outputs, metrics_from_predictions, save_predictions
from labelchain.experiments import prior as script
from labelchain.experiments.reports import prior as report
from labelchain.experiments.reports import prior_rows as merged
from labelchain.experiments.reports import prior_tables as tables
from labelchain.experiments.reports.prior_shortlist import recall_at

GOAL = merged.GOAL_METRICS


def _row(dataset: str, seed: int, method: str, value: float | dict, kind: str = "dynamic", **extra) -> dict:
    metrics = value if isinstance(value, dict) else {m: value for m in GOAL}
    return {"dataset": dataset, "seed": seed, "method": method, "kind": kind, "metrics": metrics, **extra}


def _file(rows: list[dict], datasets: list[str], seeds: list[int], command: str = "grid") -> dict:
    args = {"datasets": datasets, "seeds": seeds, "select_metric": "nDCG@3", "prior": "ovr_logistic"}
    return {"command": command, "args": args, "rows": rows}


def _hand_made() -> tuple[dict, dict]:
    """d1: the prior ensemble above both peers on all seven (0.60/0.62 vs 0.50/0.55); d2: above on six,
    behind omikuji on example F1; subset accuracy 0 for all three on d2 (left out); d3 expected, never
    run; d4 run (not in the grid's args) but without an omikuji row."""
    prior_rows, base_rows = [], []
    for seed, bump in ((0, 0.0), (1, 0.02)):
        prior_rows.append(_row("d1", seed, "ensemble", 0.6 + bump, "ensemble"))
        d2 = {m: 0.7 + bump for m in GOAL} | {"example_f1": 0.4, "subset_accuracy": 0.0}
        prior_rows.append(_row("d2", seed, "ensemble", d2, "ensemble"))
        for dataset in ("d1", "d2"):
            zero = {"subset_accuracy": 0.0} if dataset == "d2" else {}
            base_rows += [
                _row(dataset, seed, "ovr_logistic", {m: 0.5 for m in GOAL} | zero, "peer"),
                _row(dataset, seed, "omikuji", {m: 0.55 for m in GOAL} | zero, "peer"),
            ]
    base_rows.append(_row("d1", 2, "ovr_logistic", 0.9, "peer"))  # a seed the prior grid has not run: dropped
    prior_rows.append(_row("d4", 0, "ensemble", 0.9, "ensemble"))  # run, though not in the grid's args
    base_rows.append(_row("d4", 0, "ovr_logistic", 0.5, "peer"))  # omikuji never scored on d4
    return _file(prior_rows, ["d1", "d2", "d3"], [0, 1]), _file(base_rows, ["d1", "d2"], [0, 1, 2])


def test_goal_count_differences_and_missing_cells_by_hand():
    prior, base = _hand_made()
    results = merged.combine(prior, None, base)
    assert results["missing_cells"]["prior"] == ["d3:0", "d3:1"]
    assert {r["seed"] for r in results["rows"]} == {0, 1}
    table = tables.goal(results, merged.FIXED)
    assert table["d3"] == {"missing": "no prior grid cell yet"} and table["d4"] == {"missing": "omikuji"}
    one_seed = tables.difference(results, "d4", merged.FIXED, "ovr_logistic", "P@1")
    assert one_seed is not None and one_seed.cell() == "+40.00 (1 seed, no saved predictions: no interval)"
    flat = tables.Diff(0.02, 0.02, 0.02, "t, 2 seeds", 2)  # both seeds +2 points: no noise estimate, no verdict
    assert not flat.beats and flat.cell() == "+2.00 [+2.00, +2.00] t"
    d1, d2 = table["d1"], table["d2"]
    assert d1["ahead"] and d1["seeds"] == 2 and d1["metrics"] == GOAL
    assert d1["diffs"]["ovr_logistic"]["P@1"].difference == pytest.approx(0.11)  # 0.61 - 0.50
    assert d1["diffs"]["omikuji"]["nDCG@5"].difference == pytest.approx(0.06)
    # two seeds, differences 0.10 and 0.12: t(0.975, 1) = 12.7062, sd 0.01414 / sqrt 2 -> half 0.127062
    low, high = d1["diffs"]["ovr_logistic"]["P@1"].low, d1["diffs"]["ovr_logistic"]["P@1"].high
    assert (low, high) == pytest.approx((0.11 - 0.127062, 0.11 + 0.127062), abs=1e-6)
    assert not d1["beats"]  # every seed mean ahead, but two seeds' t intervals hold 0
    assert d2["metrics"] == GOAL[:-1] and not d2["ahead"]
    assert d2["diffs"]["omikuji"]["example_f1"].difference == pytest.approx(-0.15)
    text = report.render_markdown(results)
    assert "Ahead of both peers on every metric (seed means): **1 of 2** datasets with results (d1)" in text
    assert "the goal needs 7 of 9: **open**" in text and "Missing: d3, d4." in text
    assert "| d3 | 0 | missing: no prior grid cell yet |" in text
    assert "| d1 | 2 | ovr_logistic | +11.00 [-1.71, +23.71] t |" in text
    assert "| d2 | 2 | omikuji |" in text and "left out (all 0)" in text
    assert "Not run yet: no prior_nohistory results file" in text and "- prior_nohistory: no results file." in text
    assert "NOT SHOWN where rows carry no validation metrics" in text


def test_predictions_that_disagree_with_rows_are_not_used_and_peer_copies_are_named():
    prior, base = _hand_made()
    prior["rows"].append(_row("d2", 0, "freq2rare", {m: 0.5 for m in GOAL} | {"subset_accuracy": 0.0}, "fixed"))
    results = merged.combine(prior, None, base)
    entry = {"dataset": "d1", "a": merged.FIXED, "b": "omikuji", "metric": "P@1", "low": 0.01, "high": 0.02}
    results["bootstrap"] = [entry | {"difference": 0.06}, entry | {"metric": "P@3", "difference": 0.2}]
    agree = tables.difference(results, "d1", merged.FIXED, "omikuji", "P@1")
    assert agree is not None and agree.kind == "bootstrap" and agree.cell() == "+6.00 [+1.00, +2.00] **beats**"
    other = tables.difference(results, "d1", merged.FIXED, "omikuji", "P@3")
    assert other is not None and other.kind == "t, 2 seeds, predictions disagree" and " t*" in other.cell()
    text = "\n".join(report.consistency_markdown(results))
    assert "(marked t*: the interval is the seeds' t interval instead): d1 ensemble+prior-ovr − omikuji (P@3)." in text
    assert "`*+prior-ovr` rows equal to ovr_logistic on every ranking metric: 1 (d2:0 freq2rare+prior-ovr)." in text
    assert "`*+prior-ovr` rows equal to ovr_logistic on every sets metric: 1 (d2:0 freq2rare+prior-ovr)." in text


def test_validation_choice_picks_the_best_validation_row_never_test():
    rows = [
        _row("d", 0, "rearrange+prior-ovr", 0.9, val={"nDCG@3": 0.4}),  # best on test, worse on validation
        _row("d", 0, "combined+prior-ovr", 0.1, val={"nDCG@3": 0.5}),
        _row("d", 0, "freq2rare+prior-ovr", 0.2, "fixed", val={"nDCG@3": 0.5}),  # tie: report order puts it first
        _row("d", 0, "ensemble+prior-ovr", 0.95, "ensemble"),  # no validation metrics: not a candidate
    ]
    chosen = merged.validation_choice(rows, "nDCG@3")
    assert chosen is not None and chosen["chosen"] == "freq2rare+prior-ovr" and chosen["metrics"]["P@1"] == 0.2
    assert chosen["method"] == merged.VAL_BEST
    assert merged.validation_choice(rows[3:], "nDCG@3") is None
    # between the priors: the same learner ties to the order of the rows (OvR's grid first)
    omikuji = [_row("d", 0, "combined+prior-omikuji", 0.3, val={"nDCG@3": 0.5})]
    both = merged.validation_choice(rows[1:2] + omikuji, "nDCG@3", merged.VAL_ANY)
    assert both is not None and both["chosen"] == "combined+prior-ovr" and both["method"] == merged.VAL_ANY
    omikuji[0]["val"]["nDCG@3"] = 0.51
    both = merged.validation_choice(rows + omikuji, "nDCG@3", merged.VAL_ANY)
    assert both is not None and both["chosen"] == "combined+prior-omikuji" and both["metrics"]["P@1"] == 0.3


def _which_prior() -> tuple[dict, dict, dict]:
    """OvR prior: ensemble 0.60 / 0.62 (seeds 0 / 1) on d1 and d2, rearrange and combined with validation
    nDCG@3 0.5 / 0.7. Omikuji prior, a partial grid (d2:1 not finished): ensemble 0.66 / 0.70 on d1,
    0.50 on d2:0; its rearrange is best on validation in seed 0 only (0.6 vs 0.5; 0.6 vs 0.7)."""
    ovr, omikuji = [], []
    for seed, bump in ((0, 0.0), (1, 0.02)):
        for dataset in ("d1", "d2"):
            ovr.append(_row(dataset, seed, "ensemble", 0.6 + bump, "ensemble"))
            ovr.append(_row(dataset, seed, "rearrange", 0.3, val={"nDCG@3": 0.5}))
            ovr.append(_row(dataset, seed, "combined", 0.4, val={"nDCG@3": 0.5 + 10 * bump}))
            if (dataset, seed) == ("d2", 1):
                continue
            value = 0.66 + 2 * bump if dataset == "d1" else 0.5
            omikuji.append(_row(dataset, seed, "ensemble", value, "ensemble"))
            omikuji.append(_row(dataset, seed, "rearrange", 0.35, val={"nDCG@3": 0.6}))
    _, base = _hand_made()
    omikuji_file = _file(omikuji, ["d1", "d2"], [0, 1]) | {"args": {"datasets": ["d1", "d2"], "seeds": [0, 1]}}
    omikuji_file["args"]["prior"] = "omikuji"
    return _file(ovr, ["d1", "d2"], [0, 1]), omikuji_file, base


def test_which_prior_section_by_hand():
    ovr, omikuji, base = _which_prior()
    results = merged.combine(ovr, None, base, omikuji)
    assert results["missing_cells"]["prior_omikuji"] == ["d2:1"]
    d1 = tables.difference(results, "d1", merged.FIXED_OMIKUJI, merged.FIXED, "P@1")
    # differences 0.06 and 0.08: mean 0.07, t(0.975, 1) * 0.014142 / sqrt 2 = 0.127062
    assert d1 is not None and (d1.difference, d1.low, d1.high) == pytest.approx((0.07, -0.057062, 0.197062), abs=1e-6)
    chosen = {(r["dataset"], r["seed"]): r["chosen"] for r in results["rows"] if r["method"] == merged.VAL_ANY}
    assert chosen == {("d1", 0): "rearrange+prior-omikuji", ("d1", 1): "combined+prior-ovr"} | {
        ("d2", 0): "rearrange+prior-omikuji"
    }
    val_any = [r["metrics"]["P@1"] for r in results["rows"] if r["method"] == merged.VAL_ANY]
    assert val_any == [0.35, 0.4, 0.35]  # the chosen rows' test metrics, never a pick on them
    text = report.render_markdown(results)
    section = text[text.index("## Which prior: OvR vs Omikuji") : text.index("## Ablations")]
    assert "Omikuji-prior grid not finished yet (left out, not filled in): d2:1." in section
    assert "| d1 | 2 | +7.00 [-5.71, +19.71] t |" in section
    assert "| d2 | 1 | -10.00 (1 seed, no saved predictions: no interval) |" in section
    assert "Omikuji prior ahead on every metric (seed means): d1; behind on every metric: d2." in section
    assert "### ensemble+prior-omikuji: the Omikuji-prior chain, fixed in advance" in section
    assert "Ahead of both peers on every metric (seed means): **1 of 2** datasets with results (d1)" in section
    assert "| d1 | 2 | ovr_logistic | +18.00 [-7.41, +43.41] t |" in section  # 0.66, 0.70 vs 0.50
    assert "**0 of 2** datasets with results (none)" in section  # val_best+prior-any: 0.35 / 0.40 < 0.50
    assert (
        "Chosen on validation between the priors, per dataset (seed: row): d1 (1 of 2 seeds Omikuji; "
        "0: rearrange+prior-omikuji, 1: combined+prior-ovr); d2 (1 of 1 seeds Omikuji; 0: rearrange+prior-omikuji)."
    ) in section


def test_which_prior_absent_wrong_or_empty_omikuji_grid():
    ovr, omikuji, base = _which_prior()
    for absent, why in (
        (None, "no prior_omikuji results file."),
        (_file([], ["d1"], [0]), "the prior_omikuji results"),
    ):
        text = report.render_markdown(merged.combine(ovr, None, base, absent))  # no file; one before its first cell
        assert "## Which prior: OvR vs Omikuji\n\nNot run yet: " + why in text
        assert not any(r["method"] == merged.VAL_ANY for r in merged.combine(ovr, None, base, absent)["rows"])
    assert "- prior_omikuji: no results file." in report.render_markdown(merged.combine(ovr, None, base, None))
    omikuji["args"]["prior"] = "ovr_logistic"  # the OvR grid given as --omikuji: its rows would be misnamed
    with pytest.raises(ValueError, match="^--omikuji: that grid ran with --prior ovr_logistic, this input needs"):
        merged.combine(ovr, None, base, omikuji)


def _shortlist() -> dict:
    """The shortlist grid, partial (d2:1 not finished): ensemble 0.57 / 0.60 on d1 (OvR prior 0.60 / 0.62),
    0.75 on d2:0 with example F1 0.45 and subset accuracy 0.01 (OvR prior 0.70, 0.40, 0.00)."""
    rows = [_row("d1", s, "ensemble", v, "ensemble") for s, v in ((0, 0.57), (1, 0.60))]
    rows.append(_row("d2", 0, "ensemble", {m: 0.75 for m in GOAL} | {"example_f1": 0.45, "subset_accuracy": 0.01}))
    payload = _file(rows, ["d1", "d2"], [0, 1])
    payload["args"]["shortlist"] = 50
    return payload


def test_shortlist_section_by_hand():
    prior, base = _hand_made()
    results = merged.combine(prior, None, base, None, _shortlist())
    assert results["missing_cells"]["prior_sl50"] == ["d2:1"]  # d3 / d4 are not the grid's datasets
    recall = {
        "rows": [
            {"dataset": d, "peer": "ovr_logistic", "seed": s, "n_labels": n, "recall": {"50": r}}
            for d, s, n, r in (("d1", 0, 100, 0.9), ("d2", 0, 60, 0.9), ("d2", 1, 60, 1.0), ("d4", 0, 6, 1.0))
        ]
    }
    recall["rows"] += [{"dataset": "d1", "peer": "omikuji", "seed": 0, "n_labels": 100, "recall": {"50": 0.5}}]
    recall["rows"] += [{"dataset": "d3", "peer": "ovr_logistic", "seed": 0, "n_labels": 80, "recall": {"20": 0.5}}]
    results["shortlist_recall"] = recall_at(recall)
    assert results["shortlist_recall"]["d2"] == {"n_labels": 60, "recall": pytest.approx(0.95), "seeds": [0, 1]}
    assert set(results["shortlist_recall"]) == {"d1", "d2", "d4"}  # omikuji's and another M's ignored
    entry = {"dataset": "d1", "a": merged.FIXED_SL50, "b": merged.FIXED, "metric": "P@1", "difference": -0.025}
    results["bootstrap"] = [entry | {"low": -0.05, "high": -0.01}]  # as attach_bootstrap writes one
    text = report.render_markdown(results)
    section = text[text.index("## Shortlist 50 vs the full label set (OvR prior)") : text.index("## Ablations")]
    assert "Cells of the shortlist grid not finished yet (left out, not filled in): d2:1." in section
    assert "| d1 | 100 | 90.00 (seed 0) | compared below |" in section
    assert "| d2 | 60 | 95.00 (seeds 0, 1) | compared below (cells still missing) |" in section
    assert "| d3 | — | — (not in prior_recall.json) | not run by the grid |" in section
    assert "| d4 | 6 | 100.00 (seed 0) | not run: L ≤ 50 |" in section
    # d1: -0.03 and -0.02, mean -0.025, t(0.975, 1) * 0.0070711 / sqrt 2 = 0.063531; P@1 the bootstrap's
    assert "| d1 | 2 | -2.50 [-5.00, -1.00] worse | -2.50 [-8.85, +3.85] t |" in section
    assert "| d2 | 1 | +5.00 (1 seed, no saved predictions: no interval) |" in section
    assert "| d4 |" not in section.split("| dataset | seeds |")[1]  # no shortlist row: no difference line
    assert (
        "The shortlist gains on every metric (seed means): d2; costs on every metric: d1. Intervals wholly above 0 "
        "(gains): 0 (none); wholly below 0 (costs): 1 (d1 P@1)."
    ) in section
    assert "| d1 | ensemble+prior-ovr+sl50 | 2 | 58.50 |" in text  # the seed means beside the ablations'


def test_shortlist_absent_empty_or_other_settings():
    prior, base = _hand_made()
    for absent, why in ((None, "no prior_sl50 results file."), (_file([], ["d1"], [0]), "the prior_sl50 results")):
        text = report.render_markdown(merged.combine(prior, None, base, None, absent))
        assert "## Shortlist 50 vs the full label set (OvR prior)\n\nNot run yet: " + why in text
    assert "- prior_sl50: no results file." in report.render_markdown(merged.combine(prior, None, base))
    wrong = _shortlist()
    for prior_name, shortlist, ran in (
        ("ovr_logistic", 0, "--prior ovr_logistic"),
        ("omikuji", 50, "--prior omikuji --shortlist 50"),
    ):
        wrong["args"] |= {"prior": prior_name, "shortlist": shortlist}
        with pytest.raises(
            ValueError,
            match=f"^--shortlist50: that grid ran with {ran}, this input needs --prior ovr_logistic --shortlist 50$",
        ):
            merged.combine(prior, None, base, None, wrong)
    sl50 = _shortlist()  # the shortlist grid given as --prior: its rows would be named as the full label set's
    sl50["args"]["datasets"] = ["d1"]
    with pytest.raises(
        ValueError,
        match="^--prior: that grid ran with --prior ovr_logistic --shortlist 50, this input needs --prior ovr_logistic$",
    ):
        merged.combine(sl50, None, base)


def test_nohistory_seeds_as_they_arrive_and_missing_against_the_prior_grid():
    """A no-history file merged from two runs (its args name only the last run's seeds): (d) is paired on
    the seeds both grids finished per dataset, and missing cells are the OvR-prior grid's cells it lacks."""
    prior, base = _hand_made()
    nohist = [_row("d1", s, "ensemble", 0.55 + 0.01 * s, "ensemble") for s in (0, 1)]
    nohist.append(_row("d2", 0, "ensemble", {m: 0.7 for m in GOAL} | {"example_f1": 0.45}, "ensemble"))
    results = merged.combine(prior, _file(nohist, ["d1", "d2"], [1]) | {"command": "grid --seeds 1"}, base)
    assert results["missing_cells"]["prior_nohistory"] == ["d2:1", "d4:0"]
    text = "\n".join(report.nohistory_markdown(results))
    # 0.55 / 0.56 vs 0.60 / 0.62: mean -0.055, t(0.975, 1) * 0.0070711 / sqrt 2 = 0.063531
    assert "| d1 | ensemble | 2 | -5.50 [-11.85, +0.85] t | -5.50 [-11.85, +0.85] t |" in text
    assert "| d2 | ensemble | 1 | +0.00 (1 seed, no saved predictions: no interval) | +5.00 (1 seed" in text
    assert "**1 of 2** datasets (d1)" in text and "With the interval wholly below 0: 0 (none)." in text
    assert "Seeds compared (both grids finished): d1 2, d2 1; not compared yet: d3, d4." in text


def test_made_by_names_each_cells_command_repo_relative():
    prior, base = _hand_made()
    prior["cells"] = {
        "d1:0": {"command": "python g.py --runs-dir /work/runs/p --out-dir /work/results_prior/prior --seeds 0"},
        "d1:1": {"command": "python g.py --out-dir /work/results_prior/prior --cache /tmp/c 'a b'"},
    }
    results = merged.combine(prior, None, base)
    text = "\n".join(report.cells_markdown(results))
    assert (
        "- prior: `python g.py --runs-dir <runs-dir> --out-dir experiments/results/prior --seeds 0` (1); "
        "`python g.py --out-dir experiments/results/prior --cache <cache> 'a b'` (1); `grid` (3)"
    ) in text
    assert "- base: `grid` (5)" in text and "- prior_omikuji: no cell used" in text
    assert results["sources"]["prior"] == "grid"  # the files' own commands are kept as recorded


def _save(folder: Path, method: str, dataset: str, seed: int, gold: np.ndarray, rng: np.random.Generator) -> dict:
    scores = rng.random(gold.shape) + 0.6 * gold * rng.random()
    pred = from_outputs(method, gold, scores, scores > 0.7, dataset=dataset, dataset_hash="h", seed=seed, top_k=5)
    save_predictions(folder / f"{method}.npz", pred)
    return metrics_from_predictions(pred)


def test_main_bootstraps_over_the_grids_and_val_best_reads_its_chosen_row(tmp_path):
    """Rows' metrics come from their saved predictions, so every bootstrap difference equals the
    seed-mean difference of the rows; d2 of the base grid has no predictions: t intervals there; the
    Omikuji-prior grid has not finished d2:1, so its pairs on d2 run on seed 0."""
    rng = np.random.default_rng(0)
    prior_rows, base_rows, nohist_rows, omikuji_rows, sl50_rows, cells = [], [], [], [], [], {}
    for dataset in ("d1", "d2"):
        for seed in (0, 1):
            gold = (rng.random((12, 6)) < 0.3).astype(np.int8)
            gold[:, 0] = 1
            folder = f"predictions/orderings/{dataset}/seed{seed}"
            cells[f"{dataset}:{seed}"] = {"predictions": folder, "cell_wall_time_s": 60.0}
            for method, kind in (
                ("rearrange", "dynamic"),
                ("combined", "dynamic"),
                ("best_fixed", "best_fixed"),
                ("ensemble", "ensemble"),
            ):
                metrics = _save(tmp_path / "prior" / folder, method, dataset, seed, gold, rng)
                val = (
                    {"nDCG@3": {"rearrange": 0.3 + 0.2 * seed, "combined": 0.4}.get(method, 0.0)}
                    if kind == "dynamic"
                    else None
                )
                prior_rows.append(_row(dataset, seed, method, metrics, kind, **({"val": val} if val else {})))
            if dataset == "d1":
                nohist_rows.append(
                    _row(
                        dataset,
                        seed,
                        "ensemble",
                        _save(tmp_path / "nohist" / folder, "ensemble", dataset, seed, gold, rng),
                        "ensemble",
                    )
                )
                sl50 = _save(tmp_path / "sl50" / folder, "ensemble", dataset, seed, gold, rng)
                sl50_rows.append(_row(dataset, seed, "ensemble", sl50, "ensemble"))
            if (dataset, seed) != ("d2", 1):
                for method, kind in (("rearrange", "dynamic"), ("ensemble", "ensemble")):
                    metrics = _save(tmp_path / "omikuji" / folder, method, dataset, seed, gold, rng)
                    extra = {"val": {"nDCG@3": 0.45}} if kind == "dynamic" else {}
                    omikuji_rows.append(_row(dataset, seed, method, metrics, kind, **extra))
            for method in ("ovr_logistic", "omikuji", "ensemble"):
                place = tmp_path / ("base" if dataset == "d1" else "elsewhere") / folder
                base_rows.append(_row(dataset, seed, method, _save(place, method, dataset, seed, gold, rng), "peer"))
    grids = (("prior", prior_rows), ("nohist", nohist_rows), ("omikuji", omikuji_rows), ("base", base_rows))
    for name, rows in (*grids, ("sl50", sl50_rows)):
        payload = _file(rows, ["d1", "d2"], [0, 1]) | {"cells": cells if name != "nohist" else {}}
        payload["args"]["prior"] = "omikuji" if name == "omikuji" else payload["args"]["prior"]
        payload["args"]["shortlist"] = 50 if name == "sl50" else 0
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "orderings.json").write_text(json.dumps(payload))
    args = script.Args(
        **{n: str(tmp_path / n / "orderings.json") for n in ("prior", "base", "omikuji")},
        nohistory=str(tmp_path / "nohist" / "orderings.json"),
        shortlist50=str(tmp_path / "sl50" / "orderings.json"),
        recall=str(tmp_path / "prior_recall.json"),
        out_dir=str(tmp_path / "out"),
        figure_dir=str(tmp_path / "fig"),
        resamples=50,
    )
    recall = {"dataset": "d1", "peer": "ovr_logistic", "seed": 0, "n_labels": 6, "recall": {"50": 1.0}}
    (tmp_path / "prior_recall.json").write_text(json.dumps({"rows": [recall]}))
    script.main(args)
    results = json.loads((tmp_path / "out" / "prior.json").read_text())
    assert results["shortlist_recall"] == {"d1": {"n_labels": 6, "recall": 1.0, "seeds": [0]}}
    assert results["kind"] == "prior" and (tmp_path / "fig" / script.FIGURE).stat().st_size > 0
    chosen = {(r["dataset"], r["seed"]): r["chosen"] for r in results["rows"] if r["method"] == merged.VAL_BEST}
    assert chosen == {(d, 0): "combined+prior-ovr" for d in ("d1", "d2")} | {
        (d, 1): "rearrange+prior-ovr" for d in ("d1", "d2")
    }
    chosen = {(r["dataset"], r["seed"]): r["chosen"] for r in results["rows"] if r["method"] == merged.VAL_ANY}
    assert chosen == {("d1", 0): "rearrange+prior-omikuji", ("d1", 1): "rearrange+prior-ovr"} | {
        ("d2", 0): "rearrange+prior-omikuji"  # validation 0.45 vs 0.4 (seed 0) and 0.5 (seed 1)
    }
    entries = {(e["dataset"], e["a"], e["b"], e["metric"]): e for e in results["bootstrap"]}
    for dataset, a, b in (
        ("d1", merged.VAL_BEST, "omikuji"),
        ("d1", merged.FIXED, "ovr_logistic"),
        ("d1", "ensemble+prior-ovr+nohistory", merged.FIXED),
        ("d1", merged.VAL_ANY, "ovr_logistic"),
        ("d1", merged.FIXED_OMIKUJI, merged.FIXED),
        ("d2", merged.FIXED_OMIKUJI, merged.FIXED),
        ("d1", merged.FIXED_SL50, merged.FIXED),
    ):
        for metric in ("P@1", "example_f1"):
            expected = tables.difference(results, dataset, a, b, metric)
            assert expected is not None and expected.kind == "bootstrap"
            assert entries[(dataset, a, b, metric)]["difference"] == pytest.approx(expected.difference, abs=1e-12)
    assert entries[("d2", merged.FIXED_OMIKUJI, merged.FIXED, "P@1")]["seeds"] == 1
    assert not any(d == "d2" and b == "omikuji" for d, _, b, _ in entries)  # no base predictions for d2
    assert tables.difference(results, "d2", merged.FIXED, "omikuji", "P@1").kind == "t, 2 seeds"
    text = (tmp_path / "out" / "prior.md").read_text()
    assert report.render_markdown(results) == text  # the report re-renders from prior.json alone
    assert "Chosen on validation (dataset:seed row): d1:0 combined+prior-ovr, d1:1 rearrange+prior-ovr," in text
    assert "(d) below (c) on P@1 or example F1 (seed means):" in text and "of 1** datasets" in text
    assert "- prior: 4 cells done, 4.0 min of cell wall time (d1: seeds 2, 2.0 min; d2: seeds 2, 2.0 min)." in text
    assert "Omikuji-prior grid not finished yet (left out, not filled in): d2:1." in text


REAL = Path("/work/results_prior/prior/orderings.json")


@pytest.mark.slow
@pytest.mark.skipif(not REAL.exists(), reason="the prior grid's partial results are not on this machine")
def test_the_real_partial_file_renders(tmp_path):
    base = Path(script.__file__).resolve().parent / "results" / "orderings.json"
    args = script.Args(prior=str(REAL), base=str(base), out_dir=str(tmp_path), figure_dir=str(tmp_path), resamples=20)
    script.main(args)
    assert "## Goal: the prior chain (OvR prior) vs both tuned peers" in (tmp_path / "prior.md").read_text()

"""experiments/compare_guidance.py and its report: names, baselines and verdicts on hand-made rows,
and one tiny grid on emotions."""

from __future__ import annotations

import json
import math

import pytest
from prediction_checks import assert_rows_rebuild

from labelchain.experiments import compare_guidance
from labelchain.experiments.reports import guidance as guidance_report


def test_variant_names_follow_the_issue():
    assert compare_guidance.variant_name("none", 30, 1, 0.0) == ""
    assert compare_guidance.variant_name("bcl", 30, 1, 0.0) == "bcl"
    assert compare_guidance.variant_name("mcg", 30, 2, 0.0) == "mcg+lambda2"
    assert compare_guidance.variant_name("bcl", 8, 1, 0.5) == "bcl+c8+pu50"
    assert compare_guidance.variant_name("none", 8, 3, 0.5) == "pu50"  # no clusters, no overlap


def test_baseline_keeps_learner_and_labels():
    assert guidance_report.baseline_of("combined+mcg+lambda2") == "combined"
    assert guidance_report.baseline_of("ensemble+bcl+c8+pu50") == "ensemble+pu50"
    assert guidance_report.baseline_of("rearrange") == "rearrange"


def test_verdict_on_hand_made_deltas():
    up = {"rare_f1": 0.02, "macro_f1": 0.01, "micro_f1": -0.004}
    assert guidance_report.verdict(up, noise=0.005) == "holds"
    assert guidance_report.verdict(up, noise=0.003) == "no: micro F1 -0.40 (noise 0.30)"
    down = {"rare_f1": -0.01, "macro_f1": 0.0, "micro_f1": 0.01}
    assert guidance_report.verdict(down, noise=0.0) == "no: rare F1 -1.00, macro F1 +0.00"


def _row(seed: int, method: str, micro: float, macro: float, tail: float) -> dict:
    metrics = {m: 0.5 for m in guidance_report.DELTA_METRICS}
    metrics |= {"micro_f1": micro, "macro_f1": macro, "rare_f1": tail, "5shot_micro_f1": math.nan}
    return {"dataset": "d", "seed": seed, "method": method, "metrics": metrics, "wall_time_s": 1.0}


def test_guided_minus_unguided_pairs_seeds():
    rows = [
        _row(0, "rearrange", 0.40, 0.10, 0.05),
        _row(1, "rearrange", 0.42, 0.12, 0.07),
        _row(0, "rearrange+bcl", 0.41, 0.13, 0.09),
        _row(1, "rearrange+bcl", 0.41, 0.14, 0.08),
        _row(2, "rearrange+bcl", 0.10, 0.90, 0.90),  # no unguided seed 2: left out
    ]
    rendered = guidance_report.render_markdown({"rows": rows, "command": "python x", "notes": ["made here"]})
    assert "| d | rearrange+bcl | rearrange | 2 |" in rendered and rendered.endswith("- made here\n")
    [(dataset, method, base, seeds, deltas, text)] = guidance_report.guided_minus_unguided(rows)
    assert (dataset, method, base, seeds) == ("d", "rearrange+bcl", "rearrange", 2)
    assert deltas["micro_f1"] == pytest.approx(0.0)
    assert deltas["macro_f1"] == pytest.approx(0.025)
    assert deltas["rare_f1"] == pytest.approx(0.025)
    assert math.isnan(deltas["5shot_micro_f1"])  # an empty bucket on every seed stays unmeasured
    assert text == "holds"


@pytest.mark.needs_data
@pytest.mark.slow
def test_tiny_grid_writes_rows_and_skips_done_ones(tmp_path):
    args = compare_guidance.Args(
        datasets=["emotions"],
        seeds=[0],
        guidance=["none", "bcl", "mcg"],
        clusters=3,
        lambdas=[1, 2],
        rearrange_epochs=1,
        combined_epochs=1,
        hidden_size=16,
        out_dir=str(tmp_path),
        jobs=1,
    )
    payload = compare_guidance.main(args)
    methods = sorted(r["method"] for r in payload["rows"])
    suffixes = ["", "+bcl+c3", "+bcl+c3+lambda2", "+mcg+c3", "+mcg+c3+lambda2"]
    assert methods == sorted(f"{m}{s}" for m in ("rearrange", "combined", "ensemble") for s in suffixes)
    row = next(r for r in payload["rows"] if r["method"] == "combined+bcl+c3+lambda2")
    assert row["config"]["lambda"] == 2 and row["config"]["guidance"] == "bcl"
    mcg = next(r for r in payload["rows"] if r["method"] == "rearrange+mcg+c3")
    assert mcg["config"]["mcg_restrict"] is False and mcg["metrics"]["P@1"] > 0
    assert {"PSP@5", "rare_f1", "1shot_micro_f1", "5shot_macro_f1", "100shot_micro_f1"} <= set(row["metrics"])
    assert "| emotions | combined+bcl+c3 | combined | 1 |" in (tmp_path / "guidance.md").read_text()
    assert_rows_rebuild(payload["rows"], tmp_path / "predictions" / "guidance" / "emotions" / "seed0")
    before = (tmp_path / "guidance.json").read_text()
    # λ = 2 alone (its λ = 1 rows already in the file) retrains the λ = 1 policy it starts from
    alone = compare_guidance.run_cell(
        compare_guidance.Args(**{**args.__dict__, "guidance": ["bcl"], "lambdas": [2]}),
        "emotions",
        0,
        ["bcl+c3+lambda2"],
    )
    assert sorted(r["method"] for r in alone["rows"]) == [
        f"{m}+bcl+c3+lambda2" for m in ("combined", "ensemble", "rearrange")
    ]
    compare_guidance.main(args)  # everything is in the file: nothing runs again
    assert json.loads((tmp_path / "guidance.json").read_text())["rows"] == json.loads(before)["rows"]


def test_bad_flags_are_named(tmp_path):
    args = compare_guidance.Args(datasets=["emotions"], seeds=[0], out_dir=str(tmp_path))
    with pytest.raises(SystemExit, match="--guidance must be among"):
        compare_guidance.main(compare_guidance.Args(**{**args.__dict__, "guidance": ["xlgen"]}))
    with pytest.raises(SystemExit, match="--hide-train-labels"):
        compare_guidance.main(compare_guidance.Args(**{**args.__dict__, "hide_train_labels": 1.0}))

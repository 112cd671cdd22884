"""experiments/strength.py end to end on emotions (the paper preset at a tiny budget), resume, the
verdicts on hand-made rows, and the k-fold selection helpers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prediction_checks import assert_rows_rebuild

from labelchain.agents.selection import kfold_indices, needs_folds, pick_best
from labelchain.experiments import strength
from labelchain.experiments.reports.strength import gap, goal_checks, render_markdown


def tiny_args(tmp: Path, **changes) -> strength.Args:
    base = strength.Args(
        datasets=["emotions"],
        seeds=[0],
        preset="paper",
        hidden_size=16,
        epochs=1,
        combined_epochs=1,
        folds=2,
        peers=["ovr_logistic"],
        max_train_docs=160,
        device="cpu",
        out_dir=str(tmp),
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strength")
    path = strength.main(tiny_args(tmp))
    return tmp, json.loads(path.read_text())


@pytest.mark.needs_data
@pytest.mark.slow
def test_rows_for_every_method_with_two_checkpoints_and_tuned_peers(run) -> None:
    _, results = run
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {
        "freq2rare",
        "rare2freq",
        "fixed_random",
        "always_random",
        "best_fixed",
        "rearrange",
        "combined",
        "ensemble_chains",
        "ensemble_chains_peers",
        "ovr_logistic",
        "label_frequency",
    }
    for row in rows.values():
        assert all(0.0 <= row["metrics"][m] <= 1.0 for m in ("P@1", "nDCG@5", "example_f1", "micro_f1", "macro_f1"))
        assert row["wall_time_s"] >= 0 and row["dataset"] == "emotions" and row["seed"] == 0
    assert rows["rearrange"]["config"]["preset"]["input_dropout"] == 0.2  # the paper preset, hidden overridden
    assert rows["rearrange"]["config"]["preset"]["hidden_size"] == 16
    assert set(rows["combined"]["config"]["best_epochs"]) == {"nDCG@5", "example_f1"}
    assert rows["ovr_logistic"]["config"]["hyper"]["C"] in (0.1, 1.0, 10.0)
    assert rows["label_frequency"]["kind"] == "floor"
    # 160 training docs: a 16-doc validation split, so the best fixed ordering is chosen by 2 folds
    best = rows["best_fixed"]
    assert best["selection"]["rule"].startswith("2-fold") and best["chosen"] in strength.FIXED_ORDERINGS
    assert all(len(scores) == 2 for scores in best["selection"]["folds"].values())
    assert best["metrics"] == rows[best["chosen"]]["metrics"]
    assert rows["ensemble_chains"]["config"]["members"] == ["rearrange", "combined", "rearrange_aux", "combined_aux"]
    assert rows["ensemble_chains_peers"]["config"]["members"][-1] == "ovr_logistic"
    assert rows["ensemble_chains_peers"]["config"]["fusion"] in ("mean", "rrf")  # 16 val docs: no weight search
    assert results["cells"]["emotions:0"]["data"]["n_val"] == 16


@pytest.mark.needs_data
@pytest.mark.slow
def test_every_row_keeps_predictions_that_rebuild_its_metrics(run) -> None:
    tmp, results = run
    assert_rows_rebuild(results["rows"], tmp / "predictions" / "strength" / "emotions" / "seed0")


@pytest.mark.needs_data
@pytest.mark.slow
def test_markdown_has_tables_and_verdicts(run) -> None:
    tmp, _ = run
    text = (tmp / "strength.md").read_text()
    assert "## emotions" in text and "| ensemble_chains_peers |" in text and "| label_frequency |" in text
    assert "a chain learner alone beats Omikuji's P@1" not in text  # no omikuji row, no such verdict
    assert (
        "| the ensemble beats every peer on the ranking metrics | emotions | ensemble_chains_peers vs ovr_logistic |"
        in text
    )
    assert "one seed: noise unknown" in text


@pytest.mark.needs_data
@pytest.mark.slow
def test_finished_cells_are_reused_and_changed_settings_rerun(run, capsys) -> None:
    tmp, first = run
    strength.main(tiny_args(tmp))
    assert "0 cells to run (1 reused)" in capsys.readouterr().out
    assert json.loads((tmp / "strength.json").read_text())["rows"] == first["rows"]
    args = tiny_args(tmp, epochs=2)
    assert strength.cell_config(args) != first["cells"]["emotions:0"]["config"]


def without_times(value: Any) -> Any:
    """`value` with every timing (a key ending in time_s) zeroed: all that differs between two runs."""
    if isinstance(value, dict):
        return {k: 0.0 if k.endswith("time_s") else without_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


@pytest.mark.needs_data
@pytest.mark.slow
def test_ray_backend_gives_the_rows_of_the_local_backend(run, tmp_path) -> None:
    """The same cell as one Ray Tune trial (a local Ray, 1 CPU) ends with the same rows."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (CI installs it)")
    _, local = run
    args = tiny_args(tmp_path / "out", backend="ray", jobs=1, runs_dir=str(tmp_path / "runs"))
    assert strength.cell_config(args) == local["cells"]["emotions:0"]["config"]  # where it runs is not config
    results = json.loads(strength.main(args).read_text())
    assert without_times(results["rows"]) == without_times(local["rows"])
    assert any((tmp_path / "runs" / "ray").iterdir())  # it did run as a Tune experiment


def test_bad_flags_are_named(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--preset must be one of"):
        strength.main(tiny_args(tmp_path, preset="huge"))
    with pytest.raises(SystemExit, match="--device must be one of"):
        strength.main(tiny_args(tmp_path, device="tpu"))
    with pytest.raises(SystemExit, match="--jobs must be >= 1"):
        strength.main(tiny_args(tmp_path, jobs=0))
    with pytest.raises(SystemExit, match="--address auto needs --backend ray"):
        strength.main(tiny_args(tmp_path, address="auto"))


# ----------------------------------------------------------------------------- verdicts, hand-made
def _rows(method: str, values: list[float], metric: str = "P@1") -> list[dict]:
    return [
        {"dataset": "d", "seed": s, "method": method, "metrics": {metric: v}, "wall_time_s": 1.0}
        for s, v in enumerate(values)
    ]


def test_paired_gap_and_seed_noise_exact() -> None:
    from labelchain.experiments.reports.strength import by_cell

    table = by_cell(_rows("combined", [0.62, 0.60, 0.64]) + _rows("omikuji", [0.60, 0.61, 0.60]))
    result = gap(table, "d", "combined", "omikuji", "P@1")
    # per-seed gaps +0.02, -0.01, +0.04: mean 0.0166.., sample std 0.02517..
    assert result["mean"] == pytest.approx(0.05 / 3) and result["std"] == pytest.approx(
        np.std([0.02, -0.01, 0.04], ddof=1)
    )
    assert result["wins"] == 2 and result["holds"] and result["noise"] == "within seed noise"
    assert result["relative"] == pytest.approx((0.05 / 3) / (1.81 / 3))
    clear = gap(by_cell(_rows("a", [0.7, 0.71]) + _rows("b", [0.6, 0.6])), "d", "a", "b", "P@1")
    assert clear["noise"] == "beyond seed noise" and clear["wins"] == 2
    assert gap(table, "d", "combined", "nobody", "P@1") is None


def test_goal_checks_pick_the_best_chain_learner() -> None:
    from labelchain.experiments.reports.strength import by_cell

    table = by_cell(_rows("rearrange", [0.5]) + _rows("combined", [0.7]) + _rows("omikuji", [0.6]))
    checks = [c for c in goal_checks(table, ["d"]) if c[0].startswith("a chain learner")]
    assert len(checks) == 1 and checks[0][2] == "combined vs omikuji" and checks[0][4]["mean"] == pytest.approx(0.1)
    assert "No cells finished yet." in render_markdown({"rows": []})


# ----------------------------------------------------------------------------- k-fold selection
def test_kfold_indices_partition_and_pick_best() -> None:
    folds = kfold_indices(10, 3, seed=0)
    assert [len(v) for _, v in folds] == [4, 3, 3]
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(10))
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == 10
    with pytest.raises(ValueError, match="2 <= k <= n"):
        kfold_indices(3, 4, seed=0)
    best, means = pick_best({"a": [0.5, 0.7], "b": [0.6, 0.6], "c": [0.4, 0.5]}, "nDCG@5")
    assert best == "a" and means == {"a": pytest.approx(0.6), "b": 0.6, "c": 0.45}  # tie: the earlier
    assert pick_best({"a": [0.1], "b": [0.05]}, "hamming_loss")[0] == "b"  # lower is better
    assert needs_folds(391, 0.1, 200) and not needs_folds(4880, 0.1, 200)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"seeds": [-1]}, r"--seeds must be >= 0 and <= 4294967295, got \[-1\]"),
        ({"epochs": -1}, "--epochs must be >= 0, got -1"),
        ({"hidden_size": 0}, "--hidden-size must be >= 1, got 0"),
        ({"folds": 1}, "--folds must be >= 2, got 1"),
        ({"max_train_docs": 0}, "--max-train-docs must be >= 1, got 0"),
        ({"val_fraction": float("nan")}, "--val-fraction must be a finite number > 0 and < 1, got nan"),
        ({"fixed": ["nosuch"]}, "--fixed must name orderings from .*, got 'nosuch'"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, change, words) -> None:
    """Issue 19 re-probe: these were raw ValueError tracebacks from inside training."""
    with pytest.raises(SystemExit, match=words):
        strength.main(tiny_args(tmp_path, **change))

"""compare_orderings over a dataset folder a user drops in (not in the shared data): the same report,
and every row's saved predictions rebuild its metrics exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from user_data import write_mulan

from labelchain.envs.data.fingerprint import content_hash
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import METRIC_NAMES
from labelchain.envs.predictions import check_same_documents, load_predictions, metrics_from_predictions
from labelchain.experiments.compare_orderings import Args, main, resolve_args
from labelchain.experiments.grid.predictions import keep_cell_predictions
from labelchain.experiments.run.config import ArgsError

pytestmark = pytest.mark.needs_data


def tiny_grid(tmp_path: Path, datasets: list[str], **changes) -> Args:
    settings: dict = dict(
        datasets=datasets,
        seeds=[0],
        learners=["freq2rare", "rearrange", "combined"],
        peers=["label_frequency"],
        updates=4,
        eval_every=2,
        checkpoint_every=2,
        hidden_size=16,
        runs_dir=str(tmp_path / "runs"),
        out_dir=str(tmp_path / "results"),
        progress=False,
    )
    return Args(**{**settings, **changes})


def metric_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {r["method"]: {k: v for k, v in r["metrics"].items() if k in METRIC_NAMES} for r in rows}


@pytest.mark.slow
def test_a_mulan_folder_by_path_runs_through_the_grid_with_predictions(tmp_path: Path):
    folder = write_mulan(tmp_path / "data" / "mymusic")
    results = json.loads(main(tiny_grid(tmp_path, [str(folder)])).read_text())
    rows = results["rows"]
    assert sorted(r["method"] for r in rows) == sorted(
        ["freq2rare", "rearrange", "combined", "best_fixed", "ensemble", "label_frequency"]
    )
    assert {r["dataset"] for r in rows} == {str(folder)}
    cell = results["cells"][f"{folder}:0"]
    assert cell["data"]["n_test"] == 80 and cell["data"]["n_labels"] == 6 and cell["data"]["n_features"] == 20
    assert cell["predictions"] == "predictions/orderings/mymusic/seed0"
    table = (tmp_path / "results" / "orderings.md").read_text()
    assert f"## {folder}" in table and "| label_frequency | peer | 1 |" in table
    saved = tmp_path / "results" / cell["predictions"]
    assert sorted(p.stem for p in saved.glob("*.npz")) == sorted(r["method"] for r in rows)
    preds = [load_predictions(saved / f"{r['method']}.npz", split="test", n_docs=80) for r in rows]
    check_same_documents(preds, [r["method"] for r in rows])
    for row, pred in zip(rows, preds):
        reported = {key: value for key, value in row["metrics"].items() if key in METRIC_NAMES}  # not tune_time_s
        assert metrics_from_predictions(pred) == reported, row["method"]
    assert preds[0].dataset_hash == content_hash(load_dataset(folder))
    # --redo in a fresh runs folder trains the cell again: the same seed gives the same rows
    redo = tiny_grid(tmp_path, [str(folder)], redo=True, runs_dir=str(tmp_path / "runs2"))
    again = json.loads(main(redo).read_text())
    assert again["cells"][f"{folder}:0"]["run_dir"].startswith(str(tmp_path / "runs2"))
    assert metric_table(again["rows"]) == metric_table(rows)
    assert again["command"] == results["command"]  # a redo keeps the table's command


def test_a_dataset_path_that_does_not_exist_is_named(tmp_path: Path):
    with pytest.raises(ArgsError, match="--datasets .*nowhere: .*no such file or folder"):
        resolve_args(tiny_grid(tmp_path, ["emotions", str(tmp_path / "nowhere")]))
    write_mulan(tmp_path / "a" / "mymusic")
    write_mulan(tmp_path / "b" / "mymusic")
    with pytest.raises(ArgsError, match="distinct last parts"):
        resolve_args(tiny_grid(tmp_path, [str(tmp_path / "a" / "mymusic"), str(tmp_path / "b" / "mymusic")]))


def test_a_cell_copy_names_the_methods_without_predictions(tmp_path: Path):
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "predictions" / "rearrange.npz").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="no predictions for combined, ensemble"):
        keep_cell_predictions(
            run, tmp_path / "out", "orderings", "data/my__set/", 0, ["rearrange", "combined", "ensemble"]
        )
    where = keep_cell_predictions(run, tmp_path / "out", "orderings", "data/my__set/", 2, ["rearrange"])
    assert where == "predictions/orderings/my_set/seed2"
    assert (tmp_path / "out" / where / "rearrange.npz").read_bytes() == b"x"

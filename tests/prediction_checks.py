"""The check every grid test makes of its saved predictions: each row's file rebuilds its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labelchain.envs.metrics import METRIC_NAMES
from labelchain.envs.predictions import check_same_documents, load_predictions, metrics_from_predictions


def assert_rows_rebuild(rows: list[dict[str, Any]], folder: Path) -> None:
    """Every row of one (dataset, seed) has `<folder>/<method>.npz`, and the metrics rebuilt from it
    equal the row's (only evaluate's keys: a row may add few-shot buckets or timings)."""
    preds = [load_predictions(folder / f"{row['method']}.npz") for row in rows]
    check_same_documents(preds, [row["method"] for row in rows])
    for row, pred in zip(rows, preds):
        reported = {key: value for key, value in row["metrics"].items() if key in METRIC_NAMES}
        assert metrics_from_predictions(pred) == reported, row["method"]
        assert pred.method == row["method"] and pred.seed == row["seed"]

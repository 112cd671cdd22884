"""Where a grid keeps its cells' test predictions, next to its results file, so they can be committed.

Run folders (runs/...) are not committed; the statistics over a grid (paired bootstrap intervals,
rank tests) need every row's predictions, so each finished cell's files are copied from its run
folder to `<out_dir>/predictions/<grid>/<dataset>/seed<seed>/<method>.npz` (envs.predictions; a
few hundred KB per cell on the small datasets). The cell in the results file names that folder
(relative to out_dir) as "predictions". Grids that train in their own cells (variant_grid's
compare_trees / compare_guidance, strength) write each row's file there directly
(`save_row_predictions`), from the worker: like their results, the folder must be one every worker sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from typing import IO, Any, Callable

import numpy as np
import scipy.sparse as sp

from labelchain.envs.atomic import atomic_write
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.data.fingerprint import content_hash
from labelchain.envs.predictions import PREDICTIONS_DIR, from_outputs, save_predictions
from labelchain.experiments.run.folder import run_name_part


def cell_predictions_dir(out_dir: Path, grid: str, dataset: str, seed: int) -> Path:
    """The folder holding one cell's prediction files (a dataset path is named by its last part)."""
    return Path(out_dir) / PREDICTIONS_DIR / grid / run_name_part(dataset) / f"seed{seed}"


def _writer(payload: bytes) -> Callable[[IO[bytes]], int]:
    return lambda handle: handle.write(payload)


def keep_cell_predictions(
    run_dir: Path, out_dir: Path, grid: str, dataset: str, seed: int, methods: Iterable[str]
) -> str:
    """Copy `methods`' files from the run folder's predictions/ (atomically, each replacing an older
    copy); returns the folder relative to out_dir. A method without a file is an error naming it."""
    source, target = Path(run_dir) / PREDICTIONS_DIR, cell_predictions_dir(out_dir, grid, dataset, seed)
    missing = [m for m in methods if not (source / f"{m}.npz").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source}: no predictions for {', '.join(missing)} (a run made before they were saved?)"
        )
    for method in methods:
        payload = (source / f"{method}.npz").read_bytes()
        atomic_write(target / f"{method}.npz", _writer(payload))
    return str(target.relative_to(out_dir))


def save_row_predictions(
    folder: Path | None,
    method: str,
    gold: sp.csr_matrix,
    output: tuple[Any, np.ndarray],
    *,
    dataset: Dataset,
    seed: int,
    label_freq: np.ndarray | None,
    n_train: int | None = None,
) -> None:
    """A grid row's test predictions, `output` = (label sets, scores) as its metrics got them, with the
    same `label_freq` / `n_train` (None where the row has no rare_f1 / PSP@k); nothing when `folder` is None."""
    if folder is None:
        return
    Y_pred, scores = output
    pred = from_outputs(
        method,
        gold,
        scores,
        Y_pred,
        dataset=dataset.name,
        dataset_hash=content_hash(dataset),
        seed=seed,
        label_freq=label_freq,
        n_train=n_train,
    )
    save_predictions(Path(folder) / f"{method}.npz", pred)

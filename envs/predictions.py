"""Saved test predictions: what every results row was computed from, kept so that statistics
(paired bootstrap intervals, rank tests) can be computed after the fact without training again.

One method on one split is one `.npz` file (written atomically, envs.atomic). Reading one:

    from labelchain.envs.predictions import load_predictions, metrics_from_predictions
    pred = load_predictions("runs/emotions__compare__0__1700000000/predictions/combined.npz")
    pred.top_ids        # (n, K) int32: label ids by descending score, ties to the lower id (K = min(k, L))
    pred.top_scores     # (n, K) float32: their scores (stored as float16: for display, not for ranking)
    pred.pred_sets      # (n, L) bool CSR: the predicted label sets (None for a ranking-only method)
    pred.gold           # (n, L) bool CSR: the gold label sets of the same documents
    pred.doc_ids        # (n,) int32: the documents' row indices in the split
    pred.dataset, pred.dataset_hash, pred.split, pred.method, pred.seed
    pred.label_freq, pred.n_train   # the training counts the row's rare_f1 / PSP@k used (or None)
    metrics_from_predictions(pred)  # == the row's metrics in metrics.json / orderings.json, exactly
    load_cell("experiments/results/predictions/orderings/emotions/seed0")  # {method: Predictions}

Why top-K ids rather than scores: every ranking metric reads only the first 5 ranks, and the ids
are stored in `envs.metric_core.top_k_ranked` order computed from the full float scores, so P@k,
nDCG@k and PSP@k for k <= K rebuilt from them equal the full-score values even where scores tie
(re-sorting the float16 scores would not: ties there may be new). Sizes: ids are int16 when
L < 32768, scores float16, sets and gold as CSR, zip-compressed: at most 4·K + 2·(|gold| +
|predicted|) + 16 bytes per document (a 202-document emotions file is 4 KB).

Where they are: a train_rl run folder keeps `predictions/<learner>.npz`, `best_fixed.npz`,
`ensemble.npz` and `floor.npz`; a compare_orderings cell adds `<peer>.npz` for each peer, and copies
the cell's files to `<out_dir>/predictions/orderings/<dataset>/seed<seed>/`.

Bad input is a `PredictionsError` (a ValueError) of one line naming the file and what does not
match: `load_predictions(path, dataset_hash=..., split=..., n_docs=...)` checks a file against what
the caller expects, `check_same_documents` checks several files against each other.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelchain.envs.atomic import atomic_write
from labelchain.envs.metric_core import LabelMatrix, as_label_csr, as_scores, top_k_ranked
from labelchain.envs.metrics import evaluate_ranked

FORMAT = 1
DEFAULT_TOP_K = 20
PREDICTIONS_DIR = "predictions"  # inside a run folder
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class PredictionsError(ValueError):
    """A predictions file that cannot be read, or that does not match what it is used with."""


@dataclass(frozen=True)
class Predictions:
    """One method's predictions on one split's documents (see the module docstring)."""

    method: str
    top_ids: np.ndarray
    top_scores: np.ndarray
    pred_sets: sp.csr_matrix | None
    gold: sp.csr_matrix
    doc_ids: np.ndarray
    dataset: str
    dataset_hash: str
    split: str = "test"
    seed: int | None = None
    label_freq: np.ndarray | None = None
    n_train: int | None = None
    extra: dict[str, Any] | None = None  # JSON-able notes (e.g. best_fixed's chosen learner)

    @property
    def n_docs(self) -> int:
        return int(self.gold.shape[0])

    @property
    def n_labels(self) -> int:
        return int(self.gold.shape[1])

    @property
    def k(self) -> int:
        return int(self.top_ids.shape[1])


def from_outputs(
    method: str,
    gold: LabelMatrix,
    scores: np.ndarray | None,
    Y_pred: LabelMatrix | None,
    *,
    dataset: str,
    dataset_hash: str,
    split: str = "test",
    seed: int | None = None,
    label_freq: np.ndarray | None = None,
    n_train: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    extra: dict[str, Any] | None = None,
) -> Predictions:
    """Predictions of a method from its full (n, L) scores and label sets, as `evaluate` got them."""
    gold_csr = as_label_csr(gold, "gold")
    n, n_labels = gold_csr.shape
    if top_k < 5:
        raise ValueError(f"top_k must be >= 5 (P@5 and nDCG@5 read 5 ranks), got {top_k}")
    if scores is None:
        ids, top = np.zeros((n, 0), np.int32), np.zeros((n, 0), np.float32)
    else:
        full = as_scores(scores, gold_csr.shape)
        ids = top_k_ranked(full, top_k).astype(np.int32)
        top = np.take_along_axis(full, ids, axis=1).astype(np.float32)
    sets = None if Y_pred is None else as_label_csr(Y_pred, "Y_pred")
    if sets is not None and sets.shape != (n, n_labels):
        raise ValueError(f"Y_pred has shape {sets.shape} but gold has shape {(n, n_labels)}")
    return Predictions(
        method=method,
        top_ids=ids,
        top_scores=top,
        pred_sets=sets,
        gold=gold_csr,
        doc_ids=np.arange(n, dtype=np.int32),
        dataset=dataset,
        dataset_hash=dataset_hash,
        split=split,
        seed=seed,
        label_freq=None if label_freq is None else np.asarray(label_freq, dtype=np.int64),
        n_train=n_train,
        extra=extra,
    )


def metrics_from_predictions(pred: Predictions) -> dict[str, float]:
    """Every metric of the results row (`envs.metrics.evaluate`'s keys), rebuilt exactly."""
    ranked = pred.top_ids if pred.k else None
    return evaluate_ranked(pred.gold, ranked, pred.pred_sets, pred.label_freq, pred.n_train)


# ----------------------------------------------------------------------------- file format
def _id_dtype(n_labels: int) -> type:
    return np.int16 if n_labels < np.iinfo(np.int16).max else np.int32


def _csr_arrays(prefix: str, matrix: sp.csr_matrix, id_dtype: type) -> dict[str, np.ndarray]:
    return {f"{prefix}_indptr": matrix.indptr.astype(np.int64), f"{prefix}_indices": matrix.indices.astype(id_dtype)}


def save_predictions(path: str | Path, pred: Predictions) -> Path:
    """Write `pred` to `path` (.npz, compressed, atomic); returns the path."""
    path = Path(path)
    id_dtype = _id_dtype(pred.n_labels)
    meta = {
        "format": FORMAT,
        "method": pred.method,
        "dataset": pred.dataset,
        "dataset_hash": pred.dataset_hash,
        "split": pred.split,
        "seed": pred.seed,
        "n_docs": pred.n_docs,
        "n_labels": pred.n_labels,
        "k": pred.k,
        "n_train": pred.n_train,
        "has_sets": pred.pred_sets is not None,
        "extra": pred.extra or {},
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps(meta)),
        "top_ids": pred.top_ids.astype(id_dtype),
        "top_scores": np.clip(pred.top_scores, -_FLOAT16_MAX, _FLOAT16_MAX).astype(np.float16),
        "doc_ids": pred.doc_ids.astype(np.int32),
        **_csr_arrays("gold", pred.gold, id_dtype),
    }
    if pred.pred_sets is not None:
        arrays.update(_csr_arrays("pred", pred.pred_sets, id_dtype))
    if pred.label_freq is not None:
        arrays["label_freq"] = pred.label_freq.astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle overlaps **kwds
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))
    return path


def _label_ids(arrays: Any, name: str, n_labels: int, path: Path) -> np.ndarray:
    """`arrays[name]` as int32 label ids, refused unless integral and in 0..n_labels-1 (checked before
    the cast, so a crafted float or int64 array cannot truncate or wrap into a valid-looking id)."""
    ids = arrays[name]
    if not np.issubdtype(ids.dtype, np.integer):
        raise PredictionsError(f"{path}: {name} should hold integer label ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= n_labels):
        raise PredictionsError(f"{path}: {name} holds label ids outside 0..{n_labels - 1}")
    return ids.astype(np.int32)


def _csr(arrays: Any, prefix: str, shape: tuple[int, int], path: Path) -> sp.csr_matrix:
    indptr, indices = arrays[f"{prefix}_indptr"], _label_ids(arrays, f"{prefix}_indices", shape[1], path)
    if (
        indptr.shape != (shape[0] + 1,)
        or not np.issubdtype(indptr.dtype, np.integer)
        or indptr[0] != 0
        or indptr[-1] != indices.size
        or np.any(np.diff(indptr) < 0)
    ):
        raise PredictionsError(f"{path}: {prefix} sets do not fit {shape[0]} documents x {shape[1]} labels")
    return sp.csr_matrix((np.ones(indices.size, dtype=bool), indices, indptr), shape=shape)


def load_predictions(
    path: str | Path,
    *,
    dataset_hash: str | None = None,
    split: str | None = None,
    n_docs: int | None = None,
) -> Predictions:
    """Read a file written by `save_predictions`; the keyword arguments, when given, must match it."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: no such predictions file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("format") != FORMAT:
                raise PredictionsError(f"{path}: predictions format {meta.get('format')!r}, this reader knows {FORMAT}")
            shape = (int(meta["n_docs"]), int(meta["n_labels"]))
            top_ids = _label_ids(arrays, "top_ids", shape[1], path)
            top_scores = arrays["top_scores"].astype(np.float32)
            if top_ids.shape != (shape[0], meta["k"]) or top_scores.shape != top_ids.shape:
                raise PredictionsError(f"{path}: top_ids/top_scores are not ({shape[0]}, {meta['k']})")
            if arrays["doc_ids"].shape != (shape[0],):
                raise PredictionsError(f"{path}: doc_ids is not ({shape[0]},)")
            if "label_freq" in arrays.files and arrays["label_freq"].shape != (shape[1],):
                raise PredictionsError(f"{path}: label_freq is not ({shape[1]},)")
            pred = Predictions(
                method=meta["method"],
                top_ids=top_ids,
                top_scores=top_scores,
                pred_sets=_csr(arrays, "pred", shape, path) if meta["has_sets"] else None,
                gold=_csr(arrays, "gold", shape, path),
                doc_ids=arrays["doc_ids"].astype(np.int32),
                dataset=meta["dataset"],
                dataset_hash=meta["dataset_hash"],
                split=meta["split"],
                seed=meta["seed"],
                label_freq=arrays["label_freq"] if "label_freq" in arrays.files else None,
                n_train=meta["n_train"],
                extra=meta.get("extra") or None,
            )
    except PredictionsError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, zipfile.BadZipFile) as error:
        raise PredictionsError(f"{path}: not a predictions file ({type(error).__name__}: {error})") from None
    expected = {"dataset_hash": dataset_hash, "split": split, "n_docs": n_docs}
    for field_name, want in expected.items():
        got = getattr(pred, field_name)
        if want is not None and got != want:
            raise PredictionsError(f"{path}: {field_name} is {got!r}, expected {want!r} ({pred.dataset})")
    return pred


def check_same_documents(preds: Sequence[Predictions], names: Sequence[str] | None = None) -> None:
    """Refuse to pair predictions of different data: dataset version, split, documents or gold.

    `names` (e.g. the file paths) label the predictions in the error; the first is the reference.
    """
    if not preds:
        return
    names = [p.method for p in preds] if names is None else list(names)
    ref, ref_name = preds[0], names[0]
    for pred, name in zip(preds[1:], names[1:]):
        for field_name in ("dataset_hash", "split", "n_docs", "n_labels"):
            if getattr(pred, field_name) != getattr(ref, field_name):
                raise PredictionsError(
                    f"{name}: {field_name} {getattr(pred, field_name)!r} does not match "
                    f"{ref_name}'s {getattr(ref, field_name)!r}"
                )
        if not np.array_equal(pred.doc_ids, ref.doc_ids):
            raise PredictionsError(f"{name}: its documents (doc_ids) are not {ref_name}'s")
        if (pred.gold != ref.gold).nnz:
            raise PredictionsError(f"{name}: its gold label sets differ from {ref_name}'s")


def load_cell(folder: str | Path, **expected: Any) -> dict[str, Predictions]:
    """Every `<method>.npz` of one grid cell's (or run's) folder, by method, checked to be predictions
    of the same documents (`check_same_documents`); `expected` as in `load_predictions`."""
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise PredictionsError(f"{folder}: no predictions files (*.npz)")
    preds = {path.stem: load_predictions(path, **expected) for path in paths}
    check_same_documents(list(preds.values()), [str(path) for path in paths])
    return preds

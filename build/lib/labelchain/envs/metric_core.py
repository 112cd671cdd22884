"""Shared, validated building blocks of `envs.metrics` and `envs.tail_metrics`: input checks, the
tie-broken top-k ranking, gold-hit lookup and per-label counts. Conventions are documented in
`envs.metrics`; nothing here is a metric by itself.
"""

from __future__ import annotations

from numbers import Integral
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

LabelMatrix: TypeAlias = np.ndarray | sp.spmatrix | sp.sparray


# ----------------------------------------------------------------------------- input checks
def as_label_csr(Y: LabelMatrix, name: str) -> sp.csr_matrix:
    """Bool CSR copy of a 0/1 label matrix with no stored zeros; ValueError naming `name` if bad."""
    if sp.issparse(Y):
        values = sp.coo_matrix(Y).data
        csr = sp.csr_matrix(Y, dtype=bool, copy=True)
    else:
        arr = np.asarray(Y)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n, L), got shape {arr.shape}")
        values = arr.ravel()
        csr = sp.csr_matrix(arr.astype(bool, copy=False))
    if values.size and not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 or bool values")
    if csr.shape[0] == 0 or csr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one label, got shape {csr.shape}")
    csr.eliminate_zeros()
    csr.sort_indices()
    return csr


def check_same_shape(expected: tuple[int, int], other: tuple[int, ...], name: str) -> None:
    if tuple(other) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(other)} but Y_true has shape {tuple(expected)}")


def as_scores(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if sp.issparse(scores):
        raise ValueError("scores must be a dense (n, L) float array, got a sparse matrix")
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D (n, L), got shape {arr.shape}")
    check_same_shape(shape, arr.shape, "scores")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN; rankings over NaN are undefined")
    return arr


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


# ----------------------------------------------------------------------------- ranking
def top_k_ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, min(k, L)) label ids ordered by descending score, ties to the lower label id.

    np.partition finds each row's k-th largest score in O(L); labels strictly above it are all in,
    and the remaining slots go to the lowest-id labels equal to it. A plain argpartition would pick
    among tied labels arbitrarily, which would make P@k depend on numpy's internals.
    """
    n, n_labels = scores.shape
    k_sel = min(k, n_labels)
    neg = -scores  # ascending order of `neg` = descending score
    kth = np.partition(neg, k_sel - 1, axis=1)[:, k_sel - 1 : k_sel]
    above = neg < kth
    tied = neg == kth
    slots_left = k_sel - above.sum(axis=1, keepdims=True)
    selected = above | (tied & (np.cumsum(tied, axis=1) <= slots_left))
    cols = np.nonzero(selected)[1].reshape(n, k_sel)  # ascending label id within each row
    order = np.argsort(np.take_along_axis(neg, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def gold_hits(Y_true: sp.csr_matrix, ranked: np.ndarray) -> np.ndarray:
    """hits[i, j] = whether ranked[i, j] is a gold label of document i, without densifying Y_true.

    With sorted indices, row*L + col of the stored entries is globally sorted, so membership is one
    searchsorted over all (document, label) pairs.
    """
    n, n_labels = Y_true.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(Y_true.indptr))
    gold_keys = rows * n_labels + Y_true.indices.astype(np.int64)
    query = np.arange(n, dtype=np.int64)[:, None] * n_labels + ranked.astype(np.int64)
    if gold_keys.size == 0:
        return np.zeros(ranked.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(gold_keys, query), gold_keys.size - 1)
    return gold_keys[pos] == query


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def check_label_freq(label_freq: np.ndarray, n_labels: int | None) -> np.ndarray:
    freq = np.asarray(label_freq)
    if freq.ndim != 1 or (n_labels is not None and freq.shape != (n_labels,)):
        expected = "(L,)" if n_labels is None else f"({n_labels},)"
        raise ValueError(f"label_freq must have shape {expected}, got {freq.shape}")
    if not np.issubdtype(freq.dtype, np.number) or not np.isfinite(freq).all() or (freq < 0).any():
        raise ValueError("label_freq must hold finite non-negative counts")
    return freq


# ----------------------------------------------------------------------------- set metrics
def gold_pred_both(Y_true: LabelMatrix, Y_pred: LabelMatrix) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(gold, pred, gold AND pred) as bool CSR, after validation."""
    gold = as_label_csr(Y_true, "Y_true")
    pred = as_label_csr(Y_pred, "Y_pred")
    check_same_shape(gold.shape, pred.shape, "Y_pred")
    both = gold.multiply(pred).tocsr()
    both.eliminate_zeros()
    return gold, pred, both


def row_sizes(Y: sp.csr_matrix) -> np.ndarray:
    return np.diff(Y.indptr).astype(np.int64)


def col_sizes(Y: sp.csr_matrix) -> np.ndarray:
    return np.bincount(Y.indices, minlength=Y.shape[1]).astype(np.int64)


def safe_f1(tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray, empty_value: float) -> np.ndarray:
    """2 tp / (|pred| + |gold|), with `empty_value` where both are empty."""
    denom = (n_pred + n_gold).astype(np.float64)
    return np.divide(2.0 * tp, denom, out=np.full(denom.shape, empty_value), where=denom > 0)


def label_f1(gold: sp.csr_matrix, pred: sp.csr_matrix, both: sp.csr_matrix) -> np.ndarray:
    """Per-label F1 (L,), 0 for labels never gold and never predicted."""
    return safe_f1(col_sizes(both), col_sizes(pred), col_sizes(gold), empty_value=0.0)

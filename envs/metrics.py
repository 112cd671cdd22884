"""Multi-label evaluation metrics, following LibMultiLabel / PECOS conventions.

Pure functions over label matrices. `Y_true` and `Y_pred` are 0/1 or bool (n, L) arrays, dense or
scipy sparse (kept sparse: nothing here densifies a label matrix); `scores` is a dense (n, L) float
array. Every metric returns a Python float, averaged over all n documents unless said otherwise.

Conventions (chosen once, here, so every run and every paper table agrees):

* Ranking and ties: labels are ranked by descending score; equal scores are broken by the LOWER
  label id first. The order is total, so top-1 is always a prefix of top-5.
* k larger than L: only L labels can be selected, but P@k still divides by k (as LibMultiLabel and
  PECOS do), so P@k <= L / k.
* Documents with no gold labels stay in every mean: P@k = 0 and nDCG@k = 0 for them (LibMultiLabel
  counts them as 0 too); example F1 is 1 when the prediction is also empty, else 0.
* Example F1 of an empty prediction vs an empty gold set is 1: the RL reward is example F1, and
  emitting STOP at once for a label-less document is exactly right.
* Label-level 0/0 is 0: a label with no gold and no prediction contributes F1 = 0 to the macro mean
  (it stays in the denominator L), and micro F1 is 0 when nothing is gold and nothing predicted.
  This is LibMultiLabel's Macro-F1 and scikit-learn's `f1_score(..., zero_division=0)`.
* Propensity-scored metrics (Jain, Prabhu, Varma, KDD 2016) weight a hit on label l by 1/p_l, with
  p_l from the label's training count (`propensity`), so a hit on a tail label is worth more.
  PSP@k and PSnDCG@k are reported UNNORMALISED by default (the paper's form: PSP@k = (1/k) sum of
  1/p_l over the top-k hits; PSnDCG@k = propensity-weighted DCG@k divided by the ordinary binary
  ideal DCG of min(k, |gold|) hits, so both can exceed 1). `normalized=True` divides each document's
  value by the best achievable for it (its gold labels in descending 1/p_l, top k), giving a value in
  [0, 1]. The normalisation is per document, then averaged (pyxclib instead divides the two dataset
  means). Documents without gold labels score 0 in both forms.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

HEADLINE = ("P@1", "P@3", "nDCG@3", "P@5", "nDCG@5")
RANKING_NAMES = ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5")
SET_NAMES = ("example_f1", "micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
PROPENSITY_NAMES = ("PSP@1", "PSP@3", "PSP@5", "PSnDCG@3", "PSnDCG@5")
RARE_NAME = "rare_f1"
METRIC_NAMES = RANKING_NAMES + PROPENSITY_NAMES + SET_NAMES + (RARE_NAME,)
LOWER_IS_BETTER = frozenset({"hamming_loss"})


def is_better(metric: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` (None = nothing yet) for `metric`; model selection uses it."""
    if old is None:
        return True
    return new < old if metric in LOWER_IS_BETTER else new > old
F1_AVERAGES = ("example", "micro", "macro")
DEFAULT_RARE_FRACTION = 1.0 / 3.0
PROPENSITY_A, PROPENSITY_B = 0.55, 1.5  # Jain et al.'s defaults (other values for some datasets)

LabelMatrix = np.ndarray | sp.spmatrix | sp.sparray


# ----------------------------------------------------------------------------- input checks
def _as_label_csr(Y: LabelMatrix, name: str) -> sp.csr_matrix:
    """Bool CSR copy of a 0/1 label matrix with no stored zeros; ValueError naming `name` if bad."""
    if sp.issparse(Y):
        values = Y.tocoo().data
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


def _check_same_shape(expected: tuple[int, int], other: tuple[int, ...], name: str) -> None:
    if tuple(other) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(other)} but Y_true has shape {tuple(expected)}")


def _as_scores(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if sp.issparse(scores):
        raise ValueError("scores must be a dense (n, L) float array, got a sparse matrix")
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D (n, L), got shape {arr.shape}")
    _check_same_shape(shape, arr.shape, "scores")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN; rankings over NaN are undefined")
    return arr


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


# ----------------------------------------------------------------------------- ranking
def _top_k_ranked(scores: np.ndarray, k: int) -> np.ndarray:
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


def _gold_hits(Y_true: sp.csr_matrix, ranked: np.ndarray) -> np.ndarray:
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


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _precision_from_hits(hits: np.ndarray, k: int) -> float:
    return float(hits[:, :k].sum(axis=1).mean() / k)


def _ndcg_from_hits(hits: np.ndarray, n_gold: np.ndarray, k: int) -> float:
    top = hits[:, :k]
    dcg = top @ _discounts(top.shape[1])
    ideal_counts = np.minimum(n_gold, top.shape[1])
    ideal_table = np.concatenate(([0.0], np.cumsum(_discounts(top.shape[1]))))
    idcg = ideal_table[ideal_counts]
    ratio = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return float(ratio.mean())


def precision_at_k(Y_true: LabelMatrix, scores: np.ndarray, k: int) -> float:
    """Mean over documents of |top-k(scores) ∩ gold| / k (no-gold documents count as 0).

    If k > L, all L labels are taken but the division is still by k. Ties go to lower label ids.
    """
    k = _check_k(k)
    gold = _as_label_csr(Y_true, "Y_true")
    hits = _gold_hits(gold, _top_k_ranked(_as_scores(scores, gold.shape), k))
    return _precision_from_hits(hits, k)


def ndcg_at_k(Y_true: LabelMatrix, scores: np.ndarray, k: int) -> float:
    """Mean nDCG@k with binary gains: sum over hits at rank r (1-based) of 1/log2(r+1), divided by
    the ideal DCG of min(k, |gold|) hits in front. Documents with no gold labels score 0.

    This is PECOS/LibMultiLabel nDCG. With 0/1 gold and no tied scores it equals sklearn's
    ndcg_score(Y_true, scores, k=k); sklearn differs on ties (it averages over tied orders).
    """
    k = _check_k(k)
    gold = _as_label_csr(Y_true, "Y_true")
    hits = _gold_hits(gold, _top_k_ranked(_as_scores(scores, gold.shape), k))
    return _ndcg_from_hits(hits, np.diff(gold.indptr), k)


def _check_label_freq(label_freq: np.ndarray, n_labels: int | None) -> np.ndarray:
    freq = np.asarray(label_freq)
    if freq.ndim != 1 or (n_labels is not None and freq.shape != (n_labels,)):
        expected = "(L,)" if n_labels is None else f"({n_labels},)"
        raise ValueError(f"label_freq must have shape {expected}, got {freq.shape}")
    if not np.issubdtype(freq.dtype, np.number) or not np.isfinite(freq).all() or (freq < 0).any():
        raise ValueError("label_freq must hold finite non-negative counts")
    return freq


# ----------------------------------------------------------------------------- propensity-scored
def propensity(
    label_freq: np.ndarray, n_train: int, a: float = PROPENSITY_A, b: float = PROPENSITY_B
) -> np.ndarray:
    """Propensity p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1)(B + 1)^A, float64 (L,).

    N_l = label_freq (training documents carrying l), N = n_train. Needs N >= 3 so that C > 0 and
    every p_l lies in (0, 1); a label never seen in training gets the smallest propensity.
    """
    freq = _check_label_freq(label_freq, None).astype(np.float64)
    if isinstance(n_train, bool) or not isinstance(n_train, Integral) or n_train < 3:
        raise ValueError(f"n_train must be an integer >= 3 (the propensity needs ln N > 1), got {n_train!r}")
    if freq.size and freq.max() > n_train:
        raise ValueError(f"label_freq has a count {freq.max():g} above n_train={n_train}")
    if not (a > 0 and b > 0):
        raise ValueError(f"propensity parameters must be positive, got a={a!r}, b={b!r}")
    c = (math.log(n_train) - 1.0) * (b + 1.0) ** a
    return 1.0 / (1.0 + c * (freq + b) ** (-a))


def _check_propensity(values: np.ndarray, n_labels: int) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.shape != (n_labels,):
        raise ValueError(f"propensities must have shape ({n_labels},), got {p.shape}")
    if not (np.isfinite(p).all() and (p > 0).all()):
        raise ValueError("propensities must hold finite positive values (see envs.metrics.propensity)")
    return p


def _best_gains(gold: sp.csr_matrix, inv_p: np.ndarray, width: int) -> np.ndarray:
    """(n, width): each document's gold 1/p_l in descending order, zero-padded (the ideal ranking)."""
    rows = np.repeat(np.arange(gold.shape[0]), np.diff(gold.indptr))
    gains = inv_p[gold.indices]
    order = np.lexsort((-gains, rows))  # by row, then descending gain
    rank = np.arange(order.size) - gold.indptr[rows[order]]
    keep = rank < width
    best = np.zeros((gold.shape[0], width))
    best[rows[order][keep], rank[keep]] = gains[order][keep]
    return best


def _propensity_scores(
    gold: sp.csr_matrix, ranked: np.ndarray, inv_p: np.ndarray, k: int, normalized: bool
) -> tuple[float, float]:
    """(PSP@k, PSnDCG@k) from a ranking that holds at least min(k, L) labels per document."""
    width = min(k, ranked.shape[1])
    gains = _gold_hits(gold, ranked[:, :width]) * inv_p[ranked[:, :width]]
    disc = _discounts(width)
    if normalized:
        best = _best_gains(gold, inv_p, width)
        p_den, d_den = best.sum(axis=1), best @ disc
        p_num = gains.sum(axis=1)
    else:
        ideal_table = np.concatenate(([0.0], np.cumsum(disc)))
        d_den = ideal_table[np.minimum(np.diff(gold.indptr), width)]
        p_num, p_den = gains.sum(axis=1), np.full(gold.shape[0], float(k))
    psp = np.divide(p_num, p_den, out=np.zeros_like(p_num), where=p_den > 0)
    dcg = gains @ disc
    psndcg = np.divide(dcg, d_den, out=np.zeros_like(dcg), where=d_den > 0)
    return float(psp.mean()), float(psndcg.mean())


def psp_at_k(
    Y_true: LabelMatrix, scores: np.ndarray, k: int, propensities: np.ndarray, normalized: bool = False
) -> float:
    """Propensity-scored P@k: mean over documents of (1/k) sum over top-k hits of 1/p_l.

    `propensities` is `propensity(label_freq, n_train)`. normalized=True divides each
    document's value by its best achievable (its top-k gold labels by 1/p_l) instead of by nothing.
    """
    k = _check_k(k)
    gold = _as_label_csr(Y_true, "Y_true")
    inv_p = 1.0 / _check_propensity(propensities, gold.shape[1])
    ranked = _top_k_ranked(_as_scores(scores, gold.shape), k)
    return _propensity_scores(gold, ranked, inv_p, k, normalized)[0]


def psndcg_at_k(
    Y_true: LabelMatrix, scores: np.ndarray, k: int, propensities: np.ndarray, normalized: bool = False
) -> float:
    """Propensity-scored nDCG@k: sum over top-k hits at rank r of 1/(p_l log2(r+1)), divided by the
    binary ideal DCG of min(k, |gold|) hits (the paper), or with normalized=True by the best
    propensity-weighted DCG achievable for the document.
    """
    k = _check_k(k)
    gold = _as_label_csr(Y_true, "Y_true")
    inv_p = 1.0 / _check_propensity(propensities, gold.shape[1])
    ranked = _top_k_ranked(_as_scores(scores, gold.shape), k)
    return _propensity_scores(gold, ranked, inv_p, k, normalized)[1]


# ----------------------------------------------------------------------------- set metrics
def _counts(
    Y_true: LabelMatrix, Y_pred: LabelMatrix
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(gold, pred, gold AND pred) as bool CSR, after validation."""
    gold = _as_label_csr(Y_true, "Y_true")
    pred = _as_label_csr(Y_pred, "Y_pred")
    _check_same_shape(gold.shape, pred.shape, "Y_pred")
    both = gold.multiply(pred).tocsr()
    both.eliminate_zeros()
    return gold, pred, both


def _row_sizes(Y: sp.csr_matrix) -> np.ndarray:
    return np.diff(Y.indptr).astype(np.int64)


def _col_sizes(Y: sp.csr_matrix) -> np.ndarray:
    return np.bincount(Y.indices, minlength=Y.shape[1]).astype(np.int64)


def _safe_f1(
    tp: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray, empty_value: float
) -> np.ndarray:
    """2 tp / (|pred| + |gold|), with `empty_value` where both are empty."""
    denom = (n_pred + n_gold).astype(np.float64)
    return np.divide(2.0 * tp, denom, out=np.full(denom.shape, empty_value), where=denom > 0)


def _label_f1(gold: sp.csr_matrix, pred: sp.csr_matrix, both: sp.csr_matrix) -> np.ndarray:
    """Per-label F1 (L,), 0 for labels never gold and never predicted."""
    return _safe_f1(_col_sizes(both), _col_sizes(pred), _col_sizes(gold), empty_value=0.0)


def _set_metrics(
    gold: sp.csr_matrix, pred: sp.csr_matrix, both: sp.csr_matrix
) -> dict[str, float]:
    """The five set metrics from validated (gold, pred, gold AND pred); one pass, shared by all."""
    gold_rows, pred_rows, both_rows = _row_sizes(gold), _row_sizes(pred), _row_sizes(both)
    mismatch_rows = gold_rows + pred_rows - 2 * both_rows
    micro_denom = pred.nnz + gold.nnz
    return {
        "example_f1": float(_safe_f1(both_rows, pred_rows, gold_rows, empty_value=1.0).mean()),
        "micro_f1": 2.0 * both.nnz / micro_denom if micro_denom else 0.0,
        "macro_f1": float(_label_f1(gold, pred, both).mean()),
        "subset_accuracy": float((mismatch_rows == 0).mean()),
        "hamming_loss": float(mismatch_rows.sum() / (gold.shape[0] * gold.shape[1])),
    }


def f1(Y_true: LabelMatrix, Y_pred: LabelMatrix, average: str = "example") -> float:
    """F1 per document ("example"), pooled over all entries ("micro"), or per label ("macro").

    example: mean over documents of 2|P∩G|/(|P|+|G|); 1 when both P and G are empty.
    micro:   2 Σ|P∩G| / (Σ|P| + Σ|G|); 0 when nothing is gold or predicted anywhere.
    macro:   mean over all L labels of per-label F1; a label never gold nor predicted scores 0.
    """
    if average not in F1_AVERAGES:
        raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")
    return _set_metrics(*_counts(Y_true, Y_pred))[f"{average}_f1"]


def subset_accuracy(Y_true: LabelMatrix, Y_pred: LabelMatrix) -> float:
    """Fraction of documents whose predicted set equals the gold set exactly (empty == empty)."""
    return _set_metrics(*_counts(Y_true, Y_pred))["subset_accuracy"]


def hamming_loss(Y_true: LabelMatrix, Y_pred: LabelMatrix) -> float:
    """Fraction of the n*L (document, label) entries where prediction and gold disagree."""
    return _set_metrics(*_counts(Y_true, Y_pred))["hamming_loss"]


def rare_labels(
    Y_true: LabelMatrix, label_freq: np.ndarray, fraction: float = DEFAULT_RARE_FRACTION
) -> np.ndarray:
    """Ids of the rare labels that `rare_label_f1` averages over, ascending.

    Candidates are labels with at least one gold occurrence in Y_true (so each has a defined F1 and
    a label absent from test cannot dilute the score). They are ordered by training frequency, ties
    by lower label id, and the first ceil(fraction * #candidates) are kept: a fixed count, so two
    methods are always compared on the same labels.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    gold = _as_label_csr(Y_true, "Y_true")
    freq = _check_label_freq(label_freq, gold.shape[1])
    candidates = np.flatnonzero(_col_sizes(gold) > 0)
    n_keep = math.ceil(fraction * candidates.size)
    by_freq = candidates[np.argsort(freq[candidates], kind="stable")]
    return np.sort(by_freq[:n_keep])


def rare_label_f1(
    Y_true: LabelMatrix,
    Y_pred: LabelMatrix,
    label_freq: np.ndarray,
    fraction: float = DEFAULT_RARE_FRACTION,
) -> float:
    """Macro F1 over `rare_labels(Y_true, label_freq, fraction)`: how well the tail is served.

    Returns 0.0 when Y_true has no gold label at all (there is no tail to measure).
    """
    return _rare_f1(*_counts(Y_true, Y_pred), label_freq, fraction)


def _rare_f1(
    gold: sp.csr_matrix,
    pred: sp.csr_matrix,
    both: sp.csr_matrix,
    label_freq: np.ndarray,
    fraction: float,
) -> float:
    chosen = rare_labels(gold, label_freq, fraction)
    return float(_label_f1(gold, pred, both)[chosen].mean()) if chosen.size else 0.0


# ----------------------------------------------------------------------------- everything at once
def evaluate(
    Y_true: LabelMatrix,
    scores: np.ndarray | None = None,
    Y_pred: LabelMatrix | None = None,
    label_freq: np.ndarray | None = None,
    n_train: int | None = None,
) -> dict[str, float]:
    """All metrics in METRIC_NAMES order: ranking keys when `scores` is given, set keys when
    `Y_pred` is given, `rare_f1` when both `Y_pred` and `label_freq` are given, and the unnormalised
    PSP@1/3/5, PSnDCG@3/5 when `scores`, `label_freq` (training counts) and `n_train` (training
    documents) are all given.

    Validates and ranks once (top-5 serves P@1/3/5 and nDCG@3/5, since the order is a prefix order).
    """
    if scores is None and Y_pred is None:
        raise ValueError("evaluate needs scores, Y_pred, or both")
    gold = _as_label_csr(Y_true, "Y_true")
    result: dict[str, float] = {}
    if scores is not None:
        ranked = _top_k_ranked(_as_scores(scores, gold.shape), 5)
        hits = _gold_hits(gold, ranked)
        n_gold = np.diff(gold.indptr)
        result["P@1"] = _precision_from_hits(hits, 1)
        result["P@3"] = _precision_from_hits(hits, 3)
        result["P@5"] = _precision_from_hits(hits, 5)
        result["nDCG@3"] = _ndcg_from_hits(hits, n_gold, 3)
        result["nDCG@5"] = _ndcg_from_hits(hits, n_gold, 5)
        if label_freq is not None and n_train is not None:
            inv_p = 1.0 / propensity(_check_label_freq(label_freq, gold.shape[1]), n_train)
            for k in (1, 3, 5):  # PSnDCG@1 is computed too and dropped below
                result[f"PSP@{k}"], result[f"PSnDCG@{k}"] = _propensity_scores(gold, ranked, inv_p, k, False)
    if Y_pred is not None:
        _, pred, both = _counts(gold, Y_pred)
        result.update(_set_metrics(gold, pred, both))
        if label_freq is not None:
            result[RARE_NAME] = _rare_f1(gold, pred, both, label_freq, DEFAULT_RARE_FRACTION)
    return {name: result[name] for name in METRIC_NAMES if name in result}

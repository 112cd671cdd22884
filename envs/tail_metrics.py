"""Tail-aware metrics: propensity-scored P@k / nDCG@k and XLGen's few-shot buckets.

Same conventions as `envs.metrics` (ties to the lower label id, P@k divides by k even if k > L,
documents without gold count 0, label-level 0/0 = 0), plus:

* Propensity-scored metrics (Jain, Prabhu, Varma, KDD 2016) weight a hit on label l by 1/p_l, with
  p_l from the label's training count (`propensity`), so a hit on a tail label is worth more.
  PSP@k and PSnDCG@k are reported UNNORMALISED by default (the paper's form: PSP@k = (1/k) sum of
  1/p_l over the top-k hits; PSnDCG@k = propensity-weighted DCG@k divided by the ordinary binary
  ideal DCG of min(k, |gold|) hits, so both can exceed 1). `normalized=True` divides each document's
  value by the best achievable for it (its gold labels in descending 1/p_l, top k), giving a value in
  [0, 1]. The normalisation is per document, then averaged (pyxclib instead divides the two dataset
  means). Documents without gold labels score 0 in both forms.
* Few-shot buckets (XLGen, EACL 2023) group labels by training count: 0-shot = never in training
  but present in the evaluated gold labels; k-shot = 1..k training documents.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from labelchain.envs.metric_core import (
    LabelMatrix,
    as_label_csr,
    as_scores,
    check_k,
    check_label_freq,
    col_sizes,
    discounts,
    gold_hits,
    gold_pred_both,
    safe_f1,
    top_k_ranked,
)

FEW_SHOT_BUCKETS = (0, 1, 5, 10)  # XLGen reports 3-shot too; pass buckets= for it
PROPENSITY_A, PROPENSITY_B = 0.55, 1.5  # Jain et al.'s defaults (other values for some datasets)


# ----------------------------------------------------------------------------- propensity-scored
def propensity(label_freq: np.ndarray, n_train: int, a: float = PROPENSITY_A, b: float = PROPENSITY_B) -> np.ndarray:
    """Propensity p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1)(B + 1)^A, float64 (L,).

    N_l = label_freq (training documents carrying l), N = n_train. Needs N >= 3 so that C > 0 and
    every p_l lies in (0, 1); a label never seen in training gets the smallest propensity.
    """
    freq = check_label_freq(label_freq, None).astype(np.float64)
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


def propensity_scores(
    gold: sp.csr_matrix, ranked: np.ndarray, inv_p: np.ndarray, k: int, normalized: bool
) -> tuple[float, float]:
    """(PSP@k, PSnDCG@k) from a ranking that holds at least min(k, L) labels per document."""
    psp, psndcg = propensity_rows(gold, ranked, inv_p, k, normalized)
    return float(psp.mean()), float(psndcg.mean())


def propensity_rows(
    gold: sp.csr_matrix, ranked: np.ndarray, inv_p: np.ndarray, k: int, normalized: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-document (PSP@k, PSnDCG@k), (n,) each: the paired bootstrap (envs.stats) resamples these."""
    width = min(k, ranked.shape[1])
    gains = gold_hits(gold, ranked[:, :width]) * inv_p[ranked[:, :width]]
    disc = discounts(width)
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
    return psp, psndcg


def psp_at_k(
    Y_true: LabelMatrix, scores: np.ndarray, k: int, propensities: np.ndarray, normalized: bool = False
) -> float:
    """Propensity-scored P@k: mean over documents of (1/k) sum over top-k hits of 1/p_l.

    `propensities` is `propensity(label_freq, n_train)`. normalized=True divides each
    document's value by its best achievable (its top-k gold labels by 1/p_l) instead of by nothing.
    """
    k = check_k(k)
    gold = as_label_csr(Y_true, "Y_true")
    inv_p = 1.0 / _check_propensity(propensities, gold.shape[1])
    ranked = top_k_ranked(as_scores(scores, gold.shape), k)
    return propensity_scores(gold, ranked, inv_p, k, normalized)[0]


def psndcg_at_k(
    Y_true: LabelMatrix, scores: np.ndarray, k: int, propensities: np.ndarray, normalized: bool = False
) -> float:
    """Propensity-scored nDCG@k: sum over top-k hits at rank r of 1/(p_l log2(r+1)), divided by the
    binary ideal DCG of min(k, |gold|) hits (the paper), or with normalized=True by the best
    propensity-weighted DCG achievable for the document.
    """
    k = check_k(k)
    gold = as_label_csr(Y_true, "Y_true")
    inv_p = 1.0 / _check_propensity(propensities, gold.shape[1])
    ranked = top_k_ranked(as_scores(scores, gold.shape), k)
    return propensity_scores(gold, ranked, inv_p, k, normalized)[1]


def few_shot_labels(Y_true: LabelMatrix, label_freq: np.ndarray, shots: int) -> np.ndarray:
    """Ids of the labels in the `shots`-shot bucket, ascending (XLGen's definition).

    0-shot: labels never seen in training (label_freq == 0) that occur in Y_true; k-shot (k >= 1):
    labels seen in 1..k training documents, whether or not they occur in Y_true (as XLGen counts
    them; a k-shot label absent from test can only add false positives, and has F1 0 in the macro).
    """
    if isinstance(shots, bool) or not isinstance(shots, Integral) or shots < 0:
        raise ValueError(f"shots must be a non-negative integer, got {shots!r}")
    gold = as_label_csr(Y_true, "Y_true")
    freq = check_label_freq(label_freq, gold.shape[1])
    if shots == 0:
        return np.flatnonzero((freq == 0) & (col_sizes(gold) > 0))
    return np.flatnonzero((freq >= 1) & (freq <= shots))


def few_shot_f1(
    Y_true: LabelMatrix,
    Y_pred: LabelMatrix,
    label_freq: np.ndarray,
    buckets: tuple[int, ...] = FEW_SHOT_BUCKETS,
) -> dict[str, float]:
    """Micro and macro F1 restricted to each bucket's labels (`few_shot_labels`): keys
    `{k}shot_micro_f1`, `{k}shot_macro_f1` and `{k}shot_labels` (the bucket's size).

    Micro F1 pools the bucket's columns (0 when nothing in them is gold or predicted); macro F1 is
    the mean per-label F1 with this module's 0/0 = 0 (XLGen instead takes the harmonic mean of macro
    precision and macro recall). An empty bucket has NaN F1s: there is nothing to measure.
    """
    gold, pred, both = gold_pred_both(Y_true, Y_pred)
    tp, n_pred, n_gold = col_sizes(both), col_sizes(pred), col_sizes(gold)
    per_label = safe_f1(tp, n_pred, n_gold, empty_value=0.0)
    result: dict[str, float] = {}
    for shots in buckets:
        chosen = few_shot_labels(gold, label_freq, shots)
        micro = safe_f1(tp[chosen].sum(), n_pred[chosen].sum(), n_gold[chosen].sum(), 0.0)
        empty = chosen.size == 0
        result[f"{shots}shot_micro_f1"] = math.nan if empty else float(micro)
        result[f"{shots}shot_macro_f1"] = math.nan if empty else float(per_label[chosen].mean())
        result[f"{shots}shot_labels"] = float(chosen.size)
    return result

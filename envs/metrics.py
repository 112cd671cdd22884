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
* Tail-aware metrics (PSP@k, PSnDCG@k, few-shot buckets) live in `envs.tail_metrics`;
  `evaluate` adds the unnormalised PSP@k / PSnDCG@k when given the training counts.
"""

from __future__ import annotations

import math
from numbers import Real

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
    label_f1,
    row_sizes,
    safe_f1,
    top_k_ranked,
)
from labelchain.envs.tail_metrics import propensity, propensity_scores

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


# ----------------------------------------------------------------------------- ranking
def _precision_from_hits(hits: np.ndarray, k: int) -> float:
    return float(hits[:, :k].sum(axis=1).mean() / k)


def _ndcg_from_hits(hits: np.ndarray, n_gold: np.ndarray, k: int) -> float:
    return float(ndcg_rows(hits, n_gold, k).mean())


def ndcg_rows(hits: np.ndarray, n_gold: np.ndarray, k: int) -> np.ndarray:
    """Per-document nDCG@k (n,) from gold hits of the ranking; envs.stats resamples these."""
    top = hits[:, :k]
    dcg = top @ discounts(top.shape[1])
    ideal_counts = np.minimum(n_gold, top.shape[1])
    ideal_table = np.concatenate(([0.0], np.cumsum(discounts(top.shape[1]))))
    idcg = ideal_table[ideal_counts]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def precision_at_k(Y_true: LabelMatrix, scores: np.ndarray, k: int) -> float:
    """Mean over documents of |top-k(scores) ∩ gold| / k (no-gold documents count as 0).

    If k > L, all L labels are taken but the division is still by k. Ties go to lower label ids.
    """
    k = check_k(k)
    gold = as_label_csr(Y_true, "Y_true")
    hits = gold_hits(gold, top_k_ranked(as_scores(scores, gold.shape), k))
    return _precision_from_hits(hits, k)


def ndcg_at_k(Y_true: LabelMatrix, scores: np.ndarray, k: int) -> float:
    """Mean nDCG@k with binary gains: sum over hits at rank r (1-based) of 1/log2(r+1), divided by
    the ideal DCG of min(k, |gold|) hits in front. Documents with no gold labels score 0.

    This is PECOS/LibMultiLabel nDCG. With 0/1 gold and no tied scores it equals sklearn's
    ndcg_score(Y_true, scores, k=k); sklearn differs on ties (it averages over tied orders).
    """
    k = check_k(k)
    gold = as_label_csr(Y_true, "Y_true")
    hits = gold_hits(gold, top_k_ranked(as_scores(scores, gold.shape), k))
    return _ndcg_from_hits(hits, np.diff(gold.indptr), k)


def _set_metrics(gold: sp.csr_matrix, pred: sp.csr_matrix, both: sp.csr_matrix) -> dict[str, float]:
    """The five set metrics from validated (gold, pred, gold AND pred); one pass, shared by all."""
    rows = set_rows(gold, pred, both)
    micro_denom = pred.nnz + gold.nnz
    return {
        "example_f1": float(rows["example_f1"].mean()),
        "micro_f1": 2.0 * both.nnz / micro_denom if micro_denom else 0.0,
        "macro_f1": float(label_f1(gold, pred, both).mean()),
        "subset_accuracy": float((rows["mismatches"] == 0).mean()),
        "hamming_loss": float(rows["mismatches"].sum() / (gold.shape[0] * gold.shape[1])),
    }


def set_rows(gold: sp.csr_matrix, pred: sp.csr_matrix, both: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Per-document set counts and example F1, (n,) each: what the set metrics are means or sums of
    (envs.stats resamples them)."""
    gold_rows, pred_rows, both_rows = row_sizes(gold), row_sizes(pred), row_sizes(both)
    return {
        "gold": gold_rows,
        "pred": pred_rows,
        "both": both_rows,
        "mismatches": gold_rows + pred_rows - 2 * both_rows,
        "example_f1": safe_f1(both_rows, pred_rows, gold_rows, empty_value=1.0),
    }


def f1(Y_true: LabelMatrix, Y_pred: LabelMatrix, average: str = "example") -> float:
    """F1 per document ("example"), pooled over all entries ("micro"), or per label ("macro").

    example: mean over documents of 2|P∩G|/(|P|+|G|); 1 when both P and G are empty.
    micro:   2 Σ|P∩G| / (Σ|P| + Σ|G|); 0 when nothing is gold or predicted anywhere.
    macro:   mean over all L labels of per-label F1; a label never gold nor predicted scores 0.
    """
    if average not in F1_AVERAGES:
        raise ValueError(f"average must be one of {F1_AVERAGES}, got {average!r}")
    return _set_metrics(*gold_pred_both(Y_true, Y_pred))[f"{average}_f1"]


def subset_accuracy(Y_true: LabelMatrix, Y_pred: LabelMatrix) -> float:
    """Fraction of documents whose predicted set equals the gold set exactly (empty == empty)."""
    return _set_metrics(*gold_pred_both(Y_true, Y_pred))["subset_accuracy"]


def hamming_loss(Y_true: LabelMatrix, Y_pred: LabelMatrix) -> float:
    """Fraction of the n*L (document, label) entries where prediction and gold disagree."""
    return _set_metrics(*gold_pred_both(Y_true, Y_pred))["hamming_loss"]


def rare_labels(Y_true: LabelMatrix, label_freq: np.ndarray, fraction: float = DEFAULT_RARE_FRACTION) -> np.ndarray:
    """Ids of the rare labels that `rare_label_f1` averages over, ascending.

    Candidates are labels with at least one gold occurrence in Y_true (so each has a defined F1 and
    a label absent from test cannot dilute the score). They are ordered by training frequency, ties
    by lower label id, and the first ceil(fraction * #candidates) are kept: a fixed count, so two
    methods are always compared on the same labels.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    gold = as_label_csr(Y_true, "Y_true")
    freq = check_label_freq(label_freq, gold.shape[1])
    candidates = np.flatnonzero(col_sizes(gold) > 0)
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
    return _rare_f1(*gold_pred_both(Y_true, Y_pred), label_freq, fraction)


def _rare_f1(
    gold: sp.csr_matrix,
    pred: sp.csr_matrix,
    both: sp.csr_matrix,
    label_freq: np.ndarray,
    fraction: float,
) -> float:
    chosen = rare_labels(gold, label_freq, fraction)
    return float(label_f1(gold, pred, both)[chosen].mean()) if chosen.size else 0.0


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
    gold = as_label_csr(Y_true, "Y_true")
    ranked = None if scores is None else top_k_ranked(as_scores(scores, gold.shape), RANKED_WIDTH)
    return evaluate_ranked(gold, ranked, Y_pred, label_freq, n_train)


RANKED_WIDTH = 5  # the deepest rank any metric of `evaluate` looks at


def evaluate_ranked(
    Y_true: LabelMatrix,
    ranked: np.ndarray | None = None,
    Y_pred: LabelMatrix | None = None,
    label_freq: np.ndarray | None = None,
    n_train: int | None = None,
) -> dict[str, float]:
    """`evaluate` from the top-ranked label ids instead of the full scores: what saved predictions
    (envs.predictions) keep. `ranked` is (n, >= min(5, L)) ids in `top_k_ranked` order (descending
    score, ties to the lower id); only its first min(5, L) columns are read. Same values as
    `evaluate`, which calls it, so a metric rebuilt from saved top-k ids is the reported one exactly.
    """
    if ranked is None and Y_pred is None:
        raise ValueError("evaluate needs scores, Y_pred, or both")
    gold = as_label_csr(Y_true, "Y_true")
    result: dict[str, float] = {}
    if ranked is not None:
        width = min(RANKED_WIDTH, gold.shape[1])
        ranked = np.asarray(ranked)
        if ranked.ndim != 2 or ranked.shape[0] != gold.shape[0] or ranked.shape[1] < width:
            raise ValueError(f"ranked must be (n={gold.shape[0]}, >= {width}) label ids, got shape {ranked.shape}")
        ranked = ranked[:, :width].astype(np.int64)
        if ranked.size and (ranked.min() < 0 or ranked.max() >= gold.shape[1]):
            raise ValueError(f"ranked holds label ids outside 0..{gold.shape[1] - 1}")
        hits = gold_hits(gold, ranked)
        n_gold = np.diff(gold.indptr)
        result["P@1"] = _precision_from_hits(hits, 1)
        result["P@3"] = _precision_from_hits(hits, 3)
        result["P@5"] = _precision_from_hits(hits, 5)
        result["nDCG@3"] = _ndcg_from_hits(hits, n_gold, 3)
        result["nDCG@5"] = _ndcg_from_hits(hits, n_gold, 5)
        if label_freq is not None and n_train is not None:
            inv_p = 1.0 / propensity(check_label_freq(label_freq, gold.shape[1]), n_train)
            for k in (1, 3, 5):  # PSnDCG@1 is computed too and dropped below
                result[f"PSP@{k}"], result[f"PSnDCG@{k}"] = propensity_scores(gold, ranked, inv_p, k, False)
    if Y_pred is not None:
        _, pred, both = gold_pred_both(gold, Y_pred)
        result.update(_set_metrics(gold, pred, both))
        if label_freq is not None:
            result[RARE_NAME] = _rare_f1(gold, pred, both, label_freq, DEFAULT_RARE_FRACTION)
    return {name: result[name] for name in METRIC_NAMES if name in result}

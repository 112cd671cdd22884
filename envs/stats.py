"""Paired bootstrap of a metric difference between two methods on one dataset.

Why: a results table's "beats" needs to say how sure it is. Both methods' test predictions are
resampled together (same documents in every resample), so document difficulty cancels out.

Conventions (the metric definitions are envs.metrics'; nothing is re-defined here):

* Rows are (seed, test document) pairs: each seed's test predictions stacked, `strata[i]` = the seed
  of row i. Every resample draws each stratum's rows with replacement, as many as it has.
* The statistic is the mean over strata of the per-stratum metric difference a - b; for metrics that
  are means over documents this is the report's "mean over seeds" exactly, and for corpus metrics
  (micro / macro / rare F1, not means of per-document values) each stratum's metric is recomputed
  per resample from resample-weighted TP / predicted / gold counts, never averaged over documents.
* Interval: the percentile bootstrap interval at `level` (default 95%); `seeds_agreeing` counts the
  strata whose own difference has the sign of the pooled one (zero agrees with nothing).
* Vectorised: resample weights are an (R, n_s) count matrix per stratum, per-document metrics are one
  matrix product with it and per-label counts one sparse product, so 1,000 resamples of a
  3,000-document test set take well under a second (experiments/bench/bench_stats.py measures it).

numpy + scipy only: no torch or gymnasium import, so reports and notebooks can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from labelchain.envs.metric_core import (
    LabelMatrix,
    as_label_csr,
    as_scores,
    check_same_shape,
    gold_hits,
    gold_pred_both,
    safe_f1,
    top_k_ranked,
)
from labelchain.envs.metrics import (
    DEFAULT_RARE_FRACTION,
    LOWER_IS_BETTER,
    PROPENSITY_NAMES,
    RANKING_NAMES,
    ndcg_rows,
    rare_labels,
    set_rows,
)
from labelchain.envs.tail_metrics import propensity, propensity_rows

DOCUMENT_NAMES = RANKING_NAMES + PROPENSITY_NAMES + ("example_f1", "subset_accuracy", "hamming_loss")
CORPUS_NAMES = ("micro_f1", "macro_f1", "rare_f1")
BOOTSTRAP_NAMES = DOCUMENT_NAMES + CORPUS_NAMES
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class MethodPredictions:
    """One method's test predictions, rows aligned with the gold matrix (seeds stacked).

    ranked: (n, K) label ids best first (a saved top-K, or `top_k_ranked(scores, K)`), K >= 5;
    pred: (n, L) 0/1 predicted label sets, dense or sparse. Either may be None if the method has none
    (then the metrics that need it cannot be bootstrapped and say so).
    """

    ranked: np.ndarray | None = None
    pred: LabelMatrix | None = None

    @classmethod
    def from_scores(cls, scores: np.ndarray | None, pred: LabelMatrix | None = None, k: int = 20) -> MethodPredictions:
        """From full (n, L) label scores: their top-k ids in the metrics' order (ties to the lower id)."""
        return cls(None if scores is None else top_k_ranked(as_scores(scores, np.shape(scores)), k), pred)


@dataclass(frozen=True)
class PairedDifference:
    """a - b on one metric: the point difference, its bootstrap interval and the per-seed signs."""

    metric: str
    difference: float
    low: float
    high: float
    level: float
    seeds_agreeing: int
    seeds: int
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def favours_a(self) -> bool:
        """Whether the interval lies wholly on a's better side (lower for hamming_loss)."""
        return self.high < 0 if self.metric in LOWER_IS_BETTER else self.low > 0

    def text(self) -> str:
        """'+1.23 [+0.40, +2.05] (3/3 seeds)' in points ×100."""
        return (
            f"{100 * self.difference:+.2f} [{100 * self.low:+.2f}, {100 * self.high:+.2f}] "
            f"({self.seeds_agreeing}/{self.seeds} seeds)"
        )


# ----------------------------------------------------------------------------- per document
def _check_ranked(ranked: np.ndarray, shape: tuple[int, int], name: str = "ranked") -> np.ndarray:
    """(n, K) label ids, best first, K >= min(5, L): a saved top-K or `top_k_ranked`'s output."""
    arr = np.asarray(ranked)
    n, n_labels = shape
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must be (n={n}, K) label ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label ids, got dtype {arr.dtype}")
    if arr.shape[1] < min(5, n_labels):
        raise ValueError(f"{name} holds {arr.shape[1]} labels per document; P@5/nDCG@5 need {min(5, n_labels)}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_labels):
        raise ValueError(f"{name} holds label ids outside [0, {n_labels})")
    return arr


def document_metrics(
    Y_true: LabelMatrix,
    ranked: np.ndarray | None = None,
    Y_pred: LabelMatrix | None = None,
    inv_propensity: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-document values, (n,) each, of every metric in DOCUMENT_NAMES that the inputs allow; the
    mean of each is `evaluate`'s value (to float rounding). Corpus metrics (micro/macro/rare F1) are
    not means over documents, so they are absent: `paired_bootstrap` recomputes them from counts.

    `ranked`: (n, K) label ids best first (`top_k_ranked(scores, K)` or saved top-K ids);
    `inv_propensity`: 1 / `propensity(label_freq, n_train)`, for PSP@k / PSnDCG@k.
    """
    if ranked is None and Y_pred is None:
        raise ValueError("document_metrics needs ranked, Y_pred, or both")
    gold = as_label_csr(Y_true, "Y_true")
    out: dict[str, np.ndarray] = {}
    if ranked is not None:
        top = _check_ranked(ranked, gold.shape)[:, :5]
        hits = gold_hits(gold, top)
        n_gold = np.diff(gold.indptr)
        for k in (1, 3, 5):
            out[f"P@{k}"] = hits[:, :k].sum(axis=1) / k
        for k in (3, 5):
            out[f"nDCG@{k}"] = ndcg_rows(hits, n_gold, k)
        if inv_propensity is not None:
            for k in (1, 3, 5):
                out[f"PSP@{k}"], out[f"PSnDCG@{k}"] = propensity_rows(gold, top, inv_propensity, k, False)
    if Y_pred is not None:
        rows = set_rows(*gold_pred_both(gold, Y_pred))
        out["example_f1"] = rows["example_f1"]
        out["subset_accuracy"] = (rows["mismatches"] == 0).astype(np.float64)
        out["hamming_loss"] = rows["mismatches"] / gold.shape[1]
    return {name: out[name] for name in DOCUMENT_NAMES if name in out}


# ----------------------------------------------------------------------------- inputs
def _check_strata(strata: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(strata)
    if arr.shape != (n,):
        raise ValueError(f"strata has shape {arr.shape} but gold has {n} rows (one stratum label per row)")
    return arr


def _csr(Y: LabelMatrix, shape: tuple[int, int], name: str) -> sp.csr_matrix:
    csr = as_label_csr(Y, name)
    if csr.shape[0] != shape[0]:
        raise ValueError(f"{name} has {csr.shape[0]} rows but gold has {shape[0]} (mismatched document counts)")
    check_same_shape(shape, csr.shape, name)
    return csr


def stack_seeds(
    by_seed: Mapping[int, tuple[LabelMatrix, MethodPredictions, MethodPredictions]],
) -> tuple[sp.csr_matrix, MethodPredictions, MethodPredictions, np.ndarray]:
    """(gold, a, b, strata) from {seed: (gold, a, b)}: each seed's rows stacked, strata = the seed."""
    if not by_seed:
        raise ValueError("stack_seeds needs at least one seed")
    seeds = sorted(by_seed)
    golds = [as_label_csr(by_seed[s][0], f"gold of seed {s}") for s in seeds]
    widths = {g.shape[1] for g in golds}
    if len(widths) != 1:
        raise ValueError(f"seeds disagree on the number of labels: {sorted(widths)}")
    strata = np.concatenate([np.full(g.shape[0], s) for s, g in zip(seeds, golds, strict=True)])

    def stacked(parts: list[MethodPredictions]) -> MethodPredictions:
        rankeds = [p.ranked for p in parts if p.ranked is not None]
        preds = [sp.csr_matrix(p.pred) for p in parts if p.pred is not None]
        return MethodPredictions(
            np.vstack(rankeds) if len(rankeds) == len(parts) else None,
            sp.vstack(preds).tocsr() if len(preds) == len(parts) else None,
        )

    a = stacked([by_seed[s][1] for s in seeds])
    b = stacked([by_seed[s][2] for s in seeds])
    return sp.vstack(golds).tocsr(), a, b, strata


# ----------------------------------------------------------------------------- resampling
def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts: how often each of n rows is drawn in each resample of size n."""
    draws = rng.integers(0, n, size=(resamples, n))
    flat = draws + (np.arange(resamples) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def _label_counts(weights: np.ndarray, member: sp.csr_matrix) -> np.ndarray:
    """(R, L): per resample, the weighted count of rows holding each label."""
    return np.asarray((member.T.astype(np.float64) @ weights.T).T)


class _Side:
    """One method's per-document values and set matrices, for the metrics asked."""

    def __init__(self, gold: sp.csr_matrix, preds: MethodPredictions, name: str, inv_p: np.ndarray | None) -> None:
        ranked = None if preds.ranked is None else _check_ranked(preds.ranked, gold.shape, f"{name}.ranked")
        self.pred = None if preds.pred is None else _csr(preds.pred, gold.shape, f"{name}.pred")
        self.name = name
        self.doc = (
            document_metrics(gold, ranked, self.pred, inv_p) if ranked is not None or self.pred is not None else {}
        )
        self.both = None if self.pred is None else gold.multiply(self.pred).tocsr()

    def need(self, metric: str) -> None:
        if metric in DOCUMENT_NAMES and metric not in self.doc:
            what = "ranked label ids" if metric in RANKING_NAMES + PROPENSITY_NAMES else "predicted sets"
            extra = " and label_freq / n_train" if metric in PROPENSITY_NAMES else ""
            raise ValueError(f"{metric} needs {what}{extra} for method {self.name}")
        if metric in CORPUS_NAMES and self.pred is None:
            raise ValueError(f"{metric} needs predicted sets for method {self.name}")


def _corpus_values(
    metric: str,
    weights: np.ndarray,
    gold: sp.csr_matrix,
    side: _Side,
    rows: np.ndarray,
    gold_counts: np.ndarray,
    chosen: np.ndarray | None,
) -> np.ndarray:
    """(R,) the corpus metric of one stratum (rows) under each resample's weights."""
    pred, both = side.pred, side.both
    assert pred is not None and both is not None
    if metric == "micro_f1":
        tp = weights @ np.diff(both.indptr)[rows]
        n_pred = weights @ np.diff(pred.indptr)[rows]
        n_gold = weights @ np.diff(gold.indptr)[rows]
        return safe_f1(tp, n_pred, n_gold, empty_value=0.0)
    tp = _label_counts(weights, both[rows])
    n_pred = _label_counts(weights, pred[rows])
    per_label = safe_f1(tp, n_pred, gold_counts, empty_value=0.0)
    if metric == "macro_f1":
        return per_label.mean(axis=1)
    assert chosen is not None
    return per_label[:, chosen].mean(axis=1) if chosen.size else np.zeros(weights.shape[0])


def paired_bootstrap(
    gold: LabelMatrix,
    a: MethodPredictions,
    b: MethodPredictions,
    strata: np.ndarray,
    metrics: Sequence[str] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
    label_freq: np.ndarray | None = None,
    n_train: int | None = None,
) -> dict[str, PairedDifference]:
    """a - b per metric with a paired, seed-stratified percentile bootstrap interval (module docs).

    metrics: names from BOOTSTRAP_NAMES (default: every one the inputs allow). PSP/PSnDCG need
    `label_freq` and `n_train` (training counts); rare_f1 needs `label_freq`. Same seed, same result.
    """
    gold_csr = as_label_csr(gold, "gold")
    strata = _check_strata(strata, gold_csr.shape[0])
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, Integral) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    resamples = int(resamples)
    inv_p = None
    if label_freq is not None and n_train is not None:
        inv_p = 1.0 / propensity(label_freq, n_train)
    sides = (_Side(gold_csr, a, "a", inv_p), _Side(gold_csr, b, "b", inv_p))
    if metrics is None:
        metrics = [
            m
            for m in BOOTSTRAP_NAMES
            if all(m in s.doc for s in sides)
            or (
                m in CORPUS_NAMES
                and all(s.pred is not None for s in sides)
                and (m != "rare_f1" or label_freq is not None)
            )
        ]
    for metric in metrics:
        if metric not in BOOTSTRAP_NAMES:
            raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(BOOTSTRAP_NAMES)}")
        if metric == "rare_f1" and label_freq is None:
            raise ValueError("rare_f1 needs label_freq (training label counts)")
        for side in sides:
            side.need(metric)
    rng = np.random.default_rng(seed)
    labels = np.unique(strata)
    boot = {m: np.zeros(resamples) for m in metrics}
    point = {m: np.zeros(labels.size) for m in metrics}
    for j, label in enumerate(labels):
        rows = np.flatnonzero(strata == label)
        # row 0: the data itself (all weights 1), rows 1..R: the resamples
        weights = np.vstack([np.ones((1, rows.size)), resample_weights(rows.size, resamples, rng)])
        corpus = [m for m in metrics if m in CORPUS_NAMES]
        gold_counts, chosen = np.zeros(0), None
        if corpus:
            gold_rows = gold_csr[rows]
            gold_counts = _label_counts(weights, gold_rows)
            if label_freq is not None and "rare_f1" in corpus:
                chosen = rare_labels(gold_rows, label_freq, DEFAULT_RARE_FRACTION)
        for metric in metrics:
            if metric in CORPUS_NAMES:
                va, vb = (_corpus_values(metric, weights, gold_csr, s, rows, gold_counts, chosen) for s in sides)
                diff = va - vb
            else:
                diff = weights @ (sides[0].doc[metric][rows] - sides[1].doc[metric][rows]) / rows.size
            point[metric][j] = diff[0]
            boot[metric] += diff[1:]
    out = {}
    tail = (1.0 - level) / 2.0
    for metric in metrics:
        values = boot[metric] / labels.size
        pooled = float(point[metric].mean())
        low, high = np.quantile(values, [tail, 1.0 - tail])
        agree = int(np.sum(np.sign(point[metric]) == np.sign(pooled))) if pooled != 0 else 0
        out[metric] = PairedDifference(metric, pooled, float(low), float(high), level, agree, labels.size, resamples)
    return out

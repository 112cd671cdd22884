"""Fusing several trained chain policies into one classifier.

Each member contributes what `agents.decoding.predict` returns: a label set (bool CSR) and label
scores (dense, higher = better; the scales differ between members and decoders). The ensemble gives
  * fused **scores** for the ranking metrics: `mean` of per-document min-max normalised scores, or
    reciprocal-rank fusion `rrf` (sum over members of 1 / (k + rank)), which ignores scales entirely;
  * a fused **set**: `vote` (labels predicted by at least `min_votes` members) or `threshold`
    (labels whose fused score reaches a threshold tuned on validation; the top label if none does).
`Ensemble.fit` picks the fusion by a ranking metric and the set rule by a set metric on validation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from envs.metrics import RANKING_NAMES, SET_NAMES, evaluate

FUSIONS = ("mean", "rrf")
SET_RULES = ("vote", "threshold")
Output = tuple[sp.csr_matrix, np.ndarray]


def _check_outputs(outputs: Sequence[Output]) -> tuple[list[sp.csr_matrix], list[np.ndarray]]:
    if len(outputs) == 0:
        raise ValueError("an ensemble needs at least one member's outputs")
    sets = [sp.csr_matrix(Y, dtype=bool) for Y, _ in outputs]
    scores = [np.asarray(s, dtype=np.float64) for _, s in outputs]
    shape = scores[0].shape
    for i, (Y, s) in enumerate(zip(sets, scores)):
        if s.shape != shape or Y.shape != shape:
            raise ValueError(f"member {i}: set {Y.shape} / scores {s.shape} differ from member 0's {shape}")
    return sets, scores


def normalised(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise each row to [0, 1] (a constant row becomes all 0)."""
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 0.0)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every label in its row, best first; ties go to the lower label id."""
    order = np.argsort(-scores, axis=1, kind="stable")
    result = np.empty_like(order)
    np.put_along_axis(result, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return result


def mean_fusion(score_list: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean([normalised(s) for s in score_list], axis=0)


def rrf_fusion(score_list: Sequence[np.ndarray], k: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion: sum over members of 1 / (k + rank)."""
    return np.sum([1.0 / (k + ranks(s)) for s in score_list], axis=0)


def vote(sets: Sequence[sp.csr_matrix], min_votes: int) -> sp.csr_matrix:
    """Labels predicted by at least `min_votes` members."""
    counts = sum(sp.csr_matrix(Y, dtype=np.int32) for Y in sets)
    return sp.csr_matrix(counts >= min_votes, dtype=bool)


def threshold_sets(fused: np.ndarray, threshold: float) -> sp.csr_matrix:
    """Labels with fused score >= threshold; a row with none keeps its top label (never empty)."""
    chosen = fused >= threshold
    empty = ~chosen.any(axis=1)
    chosen[np.flatnonzero(empty), fused[empty].argmax(axis=1)] = True
    return sp.csr_matrix(chosen)


@dataclass
class Ensemble:
    """Fusion settings; defaults are used as-is by `predict`, or chosen on validation by `fit`.

    min_votes None = a strict majority of members; threshold is only used with set_rule="threshold".
    """

    fusion: str = "mean"
    set_rule: str = "vote"
    min_votes: int | None = None
    threshold: float = 0.5
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.set_rule not in SET_RULES:
            raise ValueError(f"set_rule must be one of {SET_RULES}, got {self.set_rule!r}")

    def fuse_scores(self, outputs: Sequence[Output]) -> np.ndarray:
        _, scores = _check_outputs(outputs)
        return mean_fusion(scores) if self.fusion == "mean" else rrf_fusion(scores, self.rrf_k)

    def predict(self, outputs: Sequence[Output]) -> tuple[sp.csr_matrix, np.ndarray]:
        """(fused label sets as bool CSR, fused scores float32) from the members' predict outputs."""
        sets, _ = _check_outputs(outputs)
        fused = self.fuse_scores(outputs)
        if self.set_rule == "vote":
            needed = len(sets) // 2 + 1 if self.min_votes is None else self.min_votes
            Y_pred = vote(sets, needed)
        else:
            Y_pred = threshold_sets(fused, self.threshold)
        return Y_pred, fused.astype(np.float32)

    def fit(
        self,
        val_outputs: Sequence[Output],
        Y_val: sp.csr_matrix,
        *,
        ranking_metric: str = "nDCG@5",
        set_metric: str = "example_f1",
        n_thresholds: int = 50,
    ) -> "Ensemble":
        """Choose the fusion (best `ranking_metric`) and the set rule, vote count or threshold (best
        `set_metric`) on a validation split; ties keep the earlier candidate. Returns self."""
        if ranking_metric not in RANKING_NAMES or set_metric not in SET_NAMES or set_metric == "hamming_loss":
            raise ValueError(f"ranking_metric must be in {RANKING_NAMES}, set_metric in {SET_NAMES[:-1]}")
        sets, scores = _check_outputs(val_outputs)
        self.validation: dict[str, float] = {}
        best_rank = -np.inf
        for fusion in FUSIONS:
            candidate = Ensemble(fusion=fusion, rrf_k=self.rrf_k)
            value = evaluate(Y_val, scores=candidate.fuse_scores(val_outputs))[ranking_metric]
            self.validation[f"{fusion}/{ranking_metric}"] = value
            if value > best_rank:
                best_rank, self.fusion = value, fusion
        fused = self.fuse_scores(val_outputs)
        best_set = -np.inf
        for votes in range(1, len(sets) + 1):
            value = evaluate(Y_val, Y_pred=vote(sets, votes))[set_metric]
            self.validation[f"vote>={votes}/{set_metric}"] = value
            if value > best_set:
                best_set, self.set_rule, self.min_votes = value, "vote", votes
        for threshold in np.unique(np.quantile(fused, np.linspace(0.0, 1.0, n_thresholds))):
            value = evaluate(Y_val, Y_pred=threshold_sets(fused, float(threshold)))[set_metric]
            if value > best_set:
                best_set, self.set_rule, self.threshold = value, "threshold", float(threshold)
        self.validation[f"threshold/{set_metric}"] = best_set if self.set_rule == "threshold" else float("nan")
        return self

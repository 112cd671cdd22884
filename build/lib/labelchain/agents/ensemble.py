"""Fusing several scorers (chain policies, non-sequential peers, the auxiliary head) into one classifier.

Each member contributes `(label set or None, label scores)`: chain policies give what
`agents.decoding.predict` returns, peers what `agents.peers.TunedPeer.predict` returns, and a member
with scores only (e.g. the auxiliary head) passes None as its set. Scales differ between members, so
  * fused **scores** for the ranking metrics: `mean` of per-document min-max normalised scores,
    `weighted` (the same with member weights on a grid of step 1/4, chosen on validation), or
    reciprocal-rank fusion `rrf` (sum over members of 1 / (k + rank)), which ignores scales entirely;
  * a fused **set**: `vote` (labels in at least `min_votes` members' sets), `member` (keep one
    member's set, e.g. a chain's, while the ranking comes from the fused scores) or `rule` (an
    `agents.set_rules.SetRule`, threshold or top-k, applied to the fused scores).
`Ensemble.fit` picks the fusion by a ranking metric and the set rule by a set metric on validation.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from labelchain.agents.set_rules import SetRule, tune_set_rule
from labelchain.envs.metrics import RANKING_NAMES, SET_NAMES, evaluate, is_better

FUSIONS = ("mean", "rrf", "weighted")
SET_RULES = ("vote", "member", "rule")
WEIGHT_STEP = 0.25
Output = tuple[sp.csr_matrix | None, np.ndarray]


def _check_outputs(outputs: Sequence[Output]) -> tuple[list[sp.csr_matrix | None], list[np.ndarray]]:
    if len(outputs) == 0:
        raise ValueError("an ensemble needs at least one member's outputs")
    sets = [None if Y is None else sp.csr_matrix(Y, dtype=bool) for Y, _ in outputs]
    scores = [np.asarray(s, dtype=np.float64) for _, s in outputs]
    shape = scores[0].shape
    for i, (Y, s) in enumerate(zip(sets, scores)):
        if s.shape != shape or (Y is not None and Y.shape != shape):
            raise ValueError(
                f"member {i}: set {None if Y is None else Y.shape} / scores {s.shape} differ from member 0's {shape}"
            )
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


def mean_fusion(score_list: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """(Weighted) mean of per-row min-max normalised scores; weights None = equal."""
    return np.average([normalised(s) for s in score_list], axis=0, weights=weights)


def rrf_fusion(score_list: Sequence[np.ndarray], k: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion: sum over members of 1 / (k + rank)."""
    return np.sum([1.0 / (k + ranks(s)) for s in score_list], axis=0)


def weight_grid(n_members: int, step: float = WEIGHT_STEP) -> list[tuple[float, ...]]:
    """All member weights in multiples of `step` summing to 1, equal weights first (where on the grid)."""
    units = round(1 / step)
    grid = [
        tuple(c / units for c in combo)
        for combo in itertools.product(range(units + 1), repeat=n_members)
        if sum(combo) == units
    ]
    return sorted(grid, key=lambda w: max(w) - min(w))  # stable: most even first


def vote(sets: Sequence[sp.csr_matrix], min_votes: int) -> sp.csr_matrix:
    """Labels predicted by at least `min_votes` members."""
    counts = sum(sp.csr_matrix(Y, dtype=np.int32) for Y in sets)
    return sp.csr_matrix(counts >= min_votes, dtype=bool)


@dataclass
class Ensemble:
    """Fusion settings; defaults are used as-is by `predict`, or chosen on validation by `fit`.

    min_votes None = a strict majority of the members that have sets; `member` indexes the outputs;
    `rule` is used with set_rule="rule"; `weights` with fusion="weighted" (None = equal).
    """

    fusion: str = "mean"
    set_rule: str = "vote"
    min_votes: int | None = None
    member: int = 0
    rule: SetRule = field(default_factory=lambda: SetRule("threshold", 0.5, at_least_one=True))
    weights: tuple[float, ...] | None = None
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.set_rule not in SET_RULES:
            raise ValueError(f"set_rule must be one of {SET_RULES}, got {self.set_rule!r}")

    def fuse_scores(self, outputs: Sequence[Output]) -> np.ndarray:
        _, scores = _check_outputs(outputs)
        if self.fusion == "rrf":
            return rrf_fusion(scores, self.rrf_k)
        if self.weights is not None and len(self.weights) != len(scores):
            raise ValueError(f"{len(self.weights)} weights for {len(scores)} members")
        return mean_fusion(scores, self.weights if self.fusion == "weighted" else None)

    def predict(self, outputs: Sequence[Output]) -> tuple[sp.csr_matrix, np.ndarray]:
        """(fused label sets as bool CSR, fused scores float32) from the members' outputs."""
        sets, _ = _check_outputs(outputs)
        fused = self.fuse_scores(outputs)
        with_sets = [Y for Y in sets if Y is not None]
        if self.set_rule == "vote":
            if not with_sets:
                raise ValueError("set_rule 'vote' needs members with label sets")
            needed = len(with_sets) // 2 + 1 if self.min_votes is None else self.min_votes
            Y_pred = vote(with_sets, needed)
        elif self.set_rule == "member":
            if not 0 <= self.member < len(sets) or sets[self.member] is None:
                raise ValueError(f"set_rule 'member': member {self.member} has no label set")
            Y_pred = sets[self.member]
        else:
            Y_pred = self.rule.apply(fused)
        return Y_pred, fused.astype(np.float32)

    def fit(
        self,
        val_outputs: Sequence[Output],
        Y_val: sp.csr_matrix,
        *,
        ranking_metric: str = "nDCG@5",
        set_metric: str = "example_f1",
        search_weights: bool = True,
    ) -> Ensemble:
        """Choose the fusion (and weights; best `ranking_metric`) and the set rule (best `set_metric`)
        on a validation split; ties keep the earlier candidate (mean, rrf, weighted; vote, member,
        rule). `search_weights` False skips the weight grid (35 candidates for 4 members, 126 for
        6): on a small validation split it would fit noise. Returns self; `self.validation` holds
        each candidate family's best value."""
        if ranking_metric not in RANKING_NAMES or set_metric not in SET_NAMES or set_metric == "hamming_loss":
            raise ValueError(f"ranking_metric must be in {RANKING_NAMES}, set_metric in {SET_NAMES[:-1]}")
        sets, scores = _check_outputs(val_outputs)
        self.validation: dict[str, float] = {}
        best_rank = None
        candidates = [Ensemble(fusion="mean"), Ensemble(fusion="rrf", rrf_k=self.rrf_k)]
        if len(scores) > 1 and search_weights:
            candidates += [Ensemble(fusion="weighted", weights=w) for w in weight_grid(len(scores))]
        for candidate in candidates:
            value = evaluate(Y_val, scores=candidate.fuse_scores(val_outputs))[ranking_metric]
            key = f"{candidate.fusion}/{ranking_metric}"
            self.validation[key] = max(value, self.validation.get(key, -np.inf))
            if is_better(ranking_metric, value, best_rank):
                best_rank, self.fusion, self.weights = value, candidate.fusion, candidate.weights
        fused = self.fuse_scores(val_outputs)
        best_set = None
        with_sets = [Y for Y in sets if Y is not None]
        for votes in range(1, len(with_sets) + 1):
            value = evaluate(Y_val, Y_pred=vote(with_sets, votes))[set_metric]
            self.validation[f"vote>={votes}/{set_metric}"] = value
            if is_better(set_metric, value, best_set):
                best_set, self.set_rule, self.min_votes = value, "vote", votes
        for index, Y in enumerate(sets):
            if Y is not None:
                value = evaluate(Y_val, Y_pred=Y)[set_metric]
                self.validation[f"member{index}/{set_metric}"] = value
                if is_better(set_metric, value, best_set):
                    best_set, self.set_rule, self.member = value, "member", index
        rule, _ = tune_set_rule(fused, Y_val, metric=set_metric)
        value = evaluate(Y_val, Y_pred=rule.apply(fused))[set_metric]
        self.validation[f"rule/{set_metric}"] = value
        if is_better(set_metric, value, best_set):
            best_set, self.set_rule, self.rule = value, "rule", rule
        return self

    def describe(self) -> dict:
        """The chosen settings, JSON-ready (for run reports and results rows)."""
        return {
            "fusion": self.fusion,
            "weights": None if self.weights is None else list(self.weights),
            "set_rule": self.set_rule,
            "min_votes": self.min_votes,
            "member": self.member,
            "rule": self.rule.to_dict(),
        }

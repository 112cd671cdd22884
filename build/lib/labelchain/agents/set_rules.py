"""Turning label scores into label sets, with the rule tuned on validation: one rule for every scorer.

Non-sequential scorers (peers, the policy's auxiliary head, fused ensemble scores) give a score per
label but no set. Forcing one label per document assumes every document has a gold label; on data
where many documents have none, that caps example F1 and makes such scorers incomparable with the
chains (whose STOP can come first). So the set rule is chosen on validation among
  * `threshold` t: labels with score >= t (possibly none), or with `at_least_one` plus the top label;
  * `top_k` k: the k best labels of every document (ties to the lower label id, as in envs.metrics);
by a set metric (example F1 by default). Ties keep the earlier candidate: thresholds (ascending,
empty sets allowed first), then top-k (ascending k).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from labelchain.envs.metrics import SET_NAMES, evaluate, is_better

RULE_KINDS = ("threshold", "top_k")


@dataclass(frozen=True)
class SetRule:
    """kind "threshold" (value = t) or "top_k" (value = k); at_least_one only matters for thresholds."""

    kind: str = "threshold"
    value: float = 0.5
    at_least_one: bool = False

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ValueError(f"set rule kind must be one of {RULE_KINDS}, got {self.kind!r}")
        if self.kind == "top_k" and (self.value < 1 or int(self.value) != self.value):
            raise ValueError(f"top_k needs a whole k >= 1, got {self.value}")

    def apply(self, scores: np.ndarray) -> sp.csr_matrix:
        """Bool CSR (n, L) of the chosen labels."""
        scores = np.asarray(scores)
        n, L = scores.shape
        if self.kind == "top_k":
            k = min(int(self.value), L)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            chosen = np.zeros((n, L), dtype=bool)
            np.put_along_axis(chosen, order, True, axis=1)
            return sp.csr_matrix(chosen)
        chosen = scores >= self.value
        if self.at_least_one and L > 0 and n > 0:
            chosen[np.arange(n), np.argmax(scores, axis=1)] = True
        return sp.csr_matrix(chosen)

    def to_dict(self) -> dict:
        return asdict(self)


def candidate_thresholds(scores: np.ndarray, n_thresholds: int = 40, top: int = 10) -> np.ndarray:
    """Quantiles of each row's `top` best scores, pooled: where set boundaries can sit (the bulk of
    near-zero scores of rare labels would otherwise take every quantile)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.array([0.5])
    top = min(top, scores.shape[1])
    best = -np.partition(-scores, top - 1, axis=1)[:, :top]
    # nudge just above each quantile too, so "strictly above a common score" is also a candidate
    qs = np.quantile(best, np.linspace(0.0, 1.0, n_thresholds))
    return np.unique(np.concatenate([qs, np.nextafter(qs, np.inf)]))


def tune_set_rule(
    scores: np.ndarray,
    Y_val: sp.csr_matrix,
    *,
    metric: str = "example_f1",
    n_thresholds: int = 40,
    max_k: int = 5,
) -> tuple[SetRule, dict[str, float]]:
    """Best rule on validation and the metric of every kind's best candidate (for reports)."""
    if metric not in SET_NAMES:
        raise ValueError(f"set metric must be one of {SET_NAMES}, got {metric!r}")
    candidates = [
        SetRule("threshold", float(t), at_least_one)
        for at_least_one in (False, True)
        for t in candidate_thresholds(scores, n_thresholds)
    ] + [SetRule("top_k", k) for k in range(1, max_k + 1)]
    best_rule, best_value = candidates[0], None
    per_kind: dict[str, float] = {}
    for rule in candidates:
        value = evaluate(Y_val, Y_pred=rule.apply(scores))[metric]
        key = f"{rule.kind}{'+top1' if rule.at_least_one else ''}/{metric}"
        if key not in per_kind or is_better(metric, value, per_kind[key]):
            per_kind[key] = value
        if is_better(metric, value, best_value):  # strict: ties keep the earlier candidate
            best_rule, best_value = rule, value
    return best_rule, per_kind

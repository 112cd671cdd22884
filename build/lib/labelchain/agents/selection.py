"""Model selection that stays stable on small data: k-fold validation when one split is too small.

A 10% validation split of a few hundred training documents holds 13 to 46 documents; choices made
on it (which fixed ordering is "best") then change from seed to seed. When the single split would
hold fewer than `min_val_docs` documents, candidates are compared by their mean validation score
over k folds instead (each fold's model trains on the other k - 1 folds), which uses every training
document for validation once. Large data keeps the one split: k trainings would cost k times more
for a decision that a large split already makes reliably.
"""

from __future__ import annotations

import numpy as np

from labelchain.envs.metrics import is_better


def needs_folds(n_train: int, val_fraction: float, min_val_docs: int) -> bool:
    """Whether the single validation split (round(n * fraction) documents) is too small."""
    return round(n_train * val_fraction) < min_val_docs


def kfold_indices(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train rows, validation rows) pairs over a seeded permutation; folds differ in size by <= 1."""
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= n documents, got k={k}, n={n}")
    folds = np.array_split(np.random.default_rng(seed).permutation(n), k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(fold)) for i, fold in enumerate(folds)]


def pick_best(scores: dict[str, list[float]], metric: str) -> tuple[str, dict[str, float]]:
    """The candidate with the best mean score (ties: the earlier one) and every candidate's mean."""
    means = {name: float(np.mean(values)) for name, values in scores.items()}
    best = None
    for name, mean in means.items():
        if best is None or is_better(metric, mean, means[best]):
            best = name
    if best is None:
        raise ValueError("no candidates to pick from")
    return best, means

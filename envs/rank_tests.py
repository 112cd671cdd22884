"""Comparing methods over many datasets: Friedman (with Iman-Davenport's F), the Nemenyi critical
difference, and Wilcoxon signed-rank tests with Holm's correction for named pairs (Demšar, JMLR 2006).

Why: a per-dataset "beats" says nothing about whether a method is better in general; these tests
treat each dataset as one observation, which is what a claim over "the nine datasets" needs.

Input: a score table {dataset: {method: value}} (one value per cell, e.g. the seed mean). Ranks are
1 = best (the highest value, or the lowest with higher_is_better=False), ties get the average rank.

Missing cells (a method absent, or NaN, on some dataset): `missing="error"` (default) raises a
one-line error naming the methods and the datasets they miss; `missing="drop"` drops every such
method from the test and reports them in `dropped`, so the test always runs on a complete block.
A dataset is never dropped. numpy + scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

Table = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Block:
    """The complete datasets x methods block a test runs on, and what `missing="drop"` removed."""

    datasets: list[str]
    methods: list[str]
    values: np.ndarray  # (N datasets, k methods)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # method -> datasets it misses


def complete_block(table: Table, methods: Sequence[str] | None = None, missing: str = "error") -> Block:
    """The values of `methods` (default: every method seen, in first-seen order) on every dataset."""
    if missing not in ("error", "drop"):
        raise ValueError(f"missing must be 'error' or 'drop', got {missing!r}")
    datasets = list(table)
    if methods is None:
        methods = list(dict.fromkeys(m for d in datasets for m in table[d]))
    absent = {m: [d for d in datasets if m not in table[d] or not math.isfinite(float(table[d][m]))] for m in methods}
    absent = {m: ds for m, ds in absent.items() if ds}
    if absent and missing == "error":
        named = "; ".join(f"{m} (missing on {', '.join(ds)})" for m, ds in absent.items())
        raise ValueError(f"methods missing on some datasets: {named}; drop them or pass missing='drop'")
    kept = [m for m in methods if m not in absent]
    values = np.array([[float(table[d][m]) for m in kept] for d in datasets], dtype=np.float64)
    return Block(datasets, kept, values.reshape(len(datasets), len(kept)), absent)


def ranks(values: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """(N, k) ranks per dataset row, 1 = best, ties averaged."""
    return stats.rankdata(-values if higher_is_better else values, axis=1)


@dataclass(frozen=True)
class Friedman:
    """Friedman's test on the mean ranks and Iman-Davenport's F variant (Demšar 2006, section 3.2.2)."""

    methods: list[str]
    mean_ranks: np.ndarray  # (k,), 1 = best
    n_datasets: int
    chi2: float
    p_chi2: float
    f: float  # Iman-Davenport F_F, df (k - 1, (k - 1)(N - 1))
    p_f: float
    dropped: dict[str, list[str]]


def friedman(
    table: Table, methods: Sequence[str] | None = None, higher_is_better: bool = True, missing: str = "error"
) -> Friedman:
    """Friedman chi2 = 12N/(k(k+1)) [sum R_j^2 - k(k+1)^2/4] on mean ranks R_j, and
    F_F = (N-1) chi2 / (N(k-1) - chi2). Needs k >= 2 methods and N >= 2 datasets after dropping."""
    block = complete_block(table, methods, missing)
    n, k = block.values.shape
    if k < 2 or n < 2:
        raise ValueError(f"the Friedman test needs >= 2 methods and >= 2 datasets, got {k} methods on {n} datasets")
    mean_ranks = ranks(block.values, higher_is_better).mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (float(np.sum(mean_ranks**2)) - k * (k + 1) ** 2 / 4.0)
    chi2 = max(chi2, 0.0)
    p_chi2 = float(stats.chi2.sf(chi2, k - 1))
    denom = n * (k - 1) - chi2
    f = math.inf if denom <= 0 else (n - 1) * chi2 / denom
    p_f = 0.0 if math.isinf(f) else float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return Friedman(block.methods, mean_ranks, n, chi2, p_chi2, f, p_f, block.dropped)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """q_alpha of the Nemenyi test: the studentized range quantile (k groups, infinite df) / sqrt(2)."""
    if k < 2:
        raise ValueError(f"the Nemenyi test needs k >= 2 methods, got {k}")
    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0))


def nemenyi_cd(k: int, n_datasets: int, alpha: float = 0.05) -> float:
    """Critical difference CD = q_alpha sqrt(k(k+1) / (6N)): mean ranks further apart differ."""
    if n_datasets < 1:
        raise ValueError(f"the Nemenyi test needs >= 1 dataset, got {n_datasets}")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_datasets))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): reject where adjusted <= alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class PairTest:
    """Wilcoxon signed-rank of a - b over datasets; Holm-adjusted within the family of pairs given."""

    a: str
    b: str
    n_datasets: int
    wins: int  # datasets where a is better
    losses: int
    median_difference: float  # a's advantage: a - b (b - a when lower is better)
    r_plus: float  # rank sum of the datasets where a is better (zero differences split evenly)
    r_minus: float
    p: float
    p_holm: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_holm <= alpha


def _signed_rank_sums(diff: np.ndarray) -> tuple[float, float]:
    """(R+, R-) with zero differences' ranks split evenly between the two (Demšar's convention)."""
    r = stats.rankdata(np.abs(diff))
    zero = r[diff == 0].sum() / 2.0
    return float(r[diff > 0].sum() + zero), float(r[diff < 0].sum() + zero)


EXACT_MAX = 20  # up to this many non-zero differences the null distribution is enumerated (2^20 signs)


def _exact_p(diff: np.ndarray) -> float:
    """Two-sided exact p of R+ given the observed (tied, averaged) ranks: every sign pattern of the
    non-zero differences is equally likely under H0; zero differences add half their ranks to each side."""
    r = stats.rankdata(np.abs(diff))
    nonzero = r[diff != 0]
    observed = _signed_rank_sums(diff)[0]
    center = r.sum() / 2.0
    signs = (np.arange(2**nonzero.size)[:, None] >> np.arange(nonzero.size)) & 1
    r_plus = signs @ nonzero + r[diff == 0].sum() / 2.0
    extreme = np.abs(r_plus - center) >= abs(observed - center) - 1e-9
    return float(extreme.mean())


def wilcoxon_holm(
    table: Table, pairs: Sequence[tuple[str, str]], higher_is_better: bool = True, alpha: float = 0.05
) -> list[PairTest]:
    """One two-sided Wilcoxon signed-rank test per (a, b) over the datasets where both have a value
    (each pair on its own complete datasets; a pair with none raises), Holm-corrected over `pairs`.

    p: exact (all sign patterns enumerated, ties and zeros kept as they are) up to EXACT_MAX non-zero
    differences, else scipy's normal approximation with zero_method="zsplit" and tie correction.
    """
    del alpha  # the threshold belongs to the reader: PairTest.significant(alpha)
    rows = []
    for a, b in pairs:
        usable = [d for d in table if all(m in table[d] and math.isfinite(float(table[d][m])) for m in (a, b))]
        if not usable:
            raise ValueError(f"wilcoxon: no dataset has both {a} and {b}")
        # rounded so that float noise (0.768 - 0.763 vs 0.936 - 0.931) cannot split a tie of |differences|
        diff = np.round(np.array([float(table[d][a]) - float(table[d][b]) for d in usable]), 12)
        if not higher_is_better:
            diff = -diff
        r_plus, r_minus = _signed_rank_sums(diff)
        if np.all(diff == 0):
            p = 1.0
        elif np.count_nonzero(diff) <= EXACT_MAX:
            p = _exact_p(diff)
        else:
            p = float(stats.wilcoxon(diff, zero_method="zsplit", method="approx").pvalue)
        rows.append(
            (a, b, diff.size, int(np.sum(diff > 0)), int(np.sum(diff < 0)), float(np.median(diff)), r_plus, r_minus, p)
        )
    adjusted = holm([r[-1] for r in rows]) if rows else np.array([])
    return [PairTest(*r, float(q)) for r, q in zip(rows, adjusted, strict=True)]

"""The statistics sections of the results reports, rendered from their JSON alone.

Why: every "beats" in orderings.md, strength.md, guidance.md and trees.md needs an interval or a
test. Two kinds, both from envs:

* Across datasets (envs.rank_tests): per metric, the seed mean of each method on each dataset is one
  observation; Friedman (and Iman-Davenport's F) on the mean ranks, the Nemenyi critical difference
  and a CD diagram, and two-sided Wilcoxon signed-rank tests for the report's named pairs, Holm-
  corrected over the pairs of one metric. "better_peer" as a pair's second method is, per dataset
  and metric, the peer with the better seed mean.
* Per dataset (envs.stats): 95% paired bootstrap intervals over test documents, seeds as strata,
  computed from saved predictions by `attach_bootstrap` and kept in the results JSON under
  "bootstrap"; a cell without saved predictions says so.

Figures (CD diagrams, the gap grid) are written by `python experiments/restate_claims.py`, never by a
render function, so a report re-renders from its JSON without side effects.
"""

from __future__ import annotations

import math
from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from labelchain.envs.metric_core import as_label_csr
from labelchain.envs.metrics import LOWER_IS_BETTER
from labelchain.envs.rank_tests import complete_block, friedman, nemenyi_cd, wilcoxon_holm
from labelchain.envs.stats import MethodPredictions, paired_bootstrap, stack_seeds

FIGURE_DIR = "analysis/figures"
BETTER_PEER = "better_peer"
ALPHA = 0.05

Pair = tuple[str, str]
# (dataset, seed, method) -> (gold, predictions) of that row, or None when nothing was saved
Loader = Callable[[str, int, str], tuple[Any, MethodPredictions] | None]


def figure_name(stem: str, metric: str) -> str:
    """'cd_orderings_P1.png' for ('cd_orderings', 'P@1'): file names without '@'."""
    return f"{stem}_{metric.replace('@', '')}.png"


def seed_means(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, dict[str, float]]:
    """{dataset: {method: mean over seeds}} of `metric`, NaN seeds skipped (absent if none is finite)."""
    values: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        value = float(row["metrics"].get(metric, math.nan))
        if math.isfinite(value):
            values.setdefault(row["dataset"], {}).setdefault(row["method"], []).append(value)
    return {d: {m: sum(v) / len(v) for m, v in methods.items()} for d, methods in values.items()}


def with_better_peer(
    table: dict[str, dict[str, float]], peers: Sequence[str], metric: str
) -> dict[str, dict[str, float]]:
    """The table plus BETTER_PEER: per dataset, the best seed mean among `peers` present there."""
    pick = min if metric in LOWER_IS_BETTER else max
    out = {}
    for dataset, methods in table.items():
        present = [methods[p] for p in peers if p in methods]
        out[dataset] = {**methods, **({BETTER_PEER: pick(present)} if present else {})}
    return out


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def across_datasets_markdown(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    methods: Sequence[str] | None,
    pairs: Sequence[Pair],
    figure_stem: str | None = None,
    peers: Sequence[str] = (),
) -> list[str]:
    """The Friedman / Nemenyi table (with CD diagram links) and the Wilcoxon-Holm table for `pairs`."""
    lines = ["## Across datasets: Friedman, Nemenyi and Wilcoxon-Holm", ""]
    datasets = sorted({r["dataset"] for r in rows})
    if len(datasets) < 2:
        return lines + [
            f"Only {len(datasets)} dataset ({', '.join(datasets)}): tests across datasets need at least two "
            "(the nine-dataset tests are in orderings.md).",
            "",
        ]
    lines += [
        f"Each of the {len(datasets)} datasets is one observation: the seed mean of each method (Demšar, JMLR 2006; "
        "labelchain.envs.rank_tests). Friedman's test on the mean ranks (1 = best, ties averaged) over the methods present on "
        "every dataset (a method missing on one is dropped and named); two methods whose mean ranks differ by more "
        f"than the Nemenyi critical difference CD (α = {ALPHA}) differ; the diagram joins methods within CD.",
        "",
        "| metric | datasets | methods | Friedman χ² (p) | Iman-Davenport F (p) | CD | mean rank, best first | diagram |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dropped_all: dict[str, set[str]] = {}
    beyond: list[str] = []
    for metric in metrics:
        table = seed_means(rows, metric)
        block = complete_block(table, methods, missing="drop")
        if len(block.methods) < 2:
            lines.append(
                f"| {metric} | {len(datasets)} | {len(block.methods)} | fewer than 2 methods on every dataset |"
            )
            continue
        result = friedman(table, block.methods, higher_is_better=metric not in LOWER_IS_BETTER)
        result = replace(result, dropped=block.dropped)
        for name in result.dropped:
            dropped_all.setdefault(name, set()).add(metric)
        cd = nemenyi_cd(len(result.methods), result.n_datasets, ALPHA)
        order = np.argsort(result.mean_ranks, kind="stable")
        ranked = ", ".join(f"{result.methods[i]} {result.mean_ranks[i]:.2f}" for i in order)
        # a path, not a link: the docs site copies results pages without their figures
        link = f"`{FIGURE_DIR}/{figure_name(figure_stem, metric)}`" if figure_stem else "—"
        lines.append(
            f"| {metric} | {result.n_datasets} | {len(result.methods)} | {result.chi2:.2f} ({_p(result.p_chi2)}) | "
            f"{result.f:.2f} ({_p(result.p_f)}) | {cd:.2f} | {ranked} | {link} |"
        )
        apart = nemenyi_pairs(result.methods, result.mean_ranks, cd)
        beyond.append(f"{metric}: {', '.join(apart) if apart else 'none'}")
    if beyond:
        lines += [
            "",
            "Pairs whose mean ranks differ by more than CD (Nemenyi, α = 0.05; better first): "
            + "; ".join(beyond)
            + ".",
        ]
    if dropped_all:
        names = [m if len(ms) == len(metrics) else f"{m} ({', '.join(sorted(ms))})" for m, ms in dropped_all.items()]
        lines += ["", f"Dropped (missing on some dataset): {', '.join(names)}."]
    lines += wilcoxon_markdown(rows, metrics, pairs, peers)
    return lines


def nemenyi_pairs(methods: Sequence[str], mean_ranks: Sequence[float] | np.ndarray, cd: float) -> list[str]:
    """'a > b' for every pair whose mean ranks differ by more than cd, better (lower rank) first, by rank."""
    order = np.argsort(np.asarray(mean_ranks), kind="stable")
    r = np.asarray(mean_ranks)
    return [
        f"{methods[i]} > {methods[j]}" for x, i in enumerate(order) for j in order[x + 1 :] if r[j] - r[i] > cd + 1e-12
    ]


def wilcoxon_markdown(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], pairs: Sequence[Pair], peers: Sequence[str]
) -> list[str]:
    if not pairs:
        return [""]
    n = len({r["dataset"] for r in rows})
    floor = 2.0 / 2**n  # the smallest two-sided exact p of n datasets (all differences one way)
    lines = [
        "",
        "Wilcoxon signed-rank test of each named pair over the datasets where both were run (two-sided, zero "
        f"differences split), Holm-corrected over the {len(pairs)} pairs of each metric; wins/losses count "
        f"datasets; median: a − b in points ×100 (b − a for hamming loss); p exact (every sign pattern). With {n} "
        f"datasets no p can be below {floor:.4f}.",
        "",
        "| metric | a vs b | datasets | wins/losses | median (points) | p | Holm p | at α = 0.05 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts: dict[str, dict[str, list[str]]] = {}  # "a vs b" -> {"survives" | "does not": [metric]}
    for metric in metrics:
        table = with_better_peer(seed_means(rows, metric), peers, metric)
        present = [(a, b) for a, b in pairs if any(a in m and b in m for m in table.values())]
        for test in wilcoxon_holm(table, present, higher_is_better=metric not in LOWER_IS_BETTER):
            name = f"{test.a} vs {test.b}"
            holds = test.significant(ALPHA) and test.median_difference > 0
            if test.significant(ALPHA):
                word = "a better" if test.median_difference > 0 else "b better"
            else:
                word = "not significant"
            verdicts.setdefault(name, {"survives": [], "does not": []})["survives" if holds else "does not"].append(
                metric
            )
            lines.append(
                f"| {metric} | {name} | {test.n_datasets} | {test.wins}/{test.losses} | "
                f"{100 * test.median_difference:+.2f} | {_p(test.p)} | {_p(test.p_holm)} | {word} |"
            )
    lines += ["", '"a beats b across datasets" survives (Holm p ≤ 0.05, a better) or not, per pair:', ""]
    for name, verdict in verdicts.items():
        kept, lost = verdict["survives"], verdict["does not"]
        text = f"survives on {', '.join(kept)}" if kept else "survives on no metric"
        if kept and lost:
            text += f"; not on {', '.join(lost)}"
        lines.append(f"- {name}: {text}.")
    return lines + [""]


# ----------------------------------------------------------------------------- per-dataset bootstrap
def resolve_pair(table: Mapping[str, float], pair: Pair, peers: Sequence[str], metric: str) -> Pair | None:
    """(a, b) with BETTER_PEER replaced by the dataset's better peer on `metric`; None if one is absent."""
    a, b = pair
    if b == BETTER_PEER:
        present = [p for p in peers if p in table]
        if not present:
            return None
        pick = min if metric in LOWER_IS_BETTER else max
        b = pick(present, key=lambda p: table[p])
    return (a, b) if a in table and b in table else None


def attach_bootstrap(
    results: dict[str, Any],
    load: Loader,
    pairs: Sequence[Pair],
    metrics: Sequence[str],
    peers: Sequence[str] = (),
    resamples: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Bootstrap every (dataset, pair, metric) whose seeds all have saved predictions for both methods;
    stores the entries in results["bootstrap"] (replacing it) and returns them. `load` reads one row's
    predictions (None = none saved): h18preds' envs.predictions files via `grid_loader`, or anything."""
    rows = results.get("rows", [])
    entries = []
    for dataset in sorted({r["dataset"] for r in rows}):
        seeds = sorted({r["seed"] for r in rows if r["dataset"] == dataset})
        for metric in metrics:
            table = seed_means([r for r in rows if r["dataset"] == dataset], metric).get(dataset, {})
            for pair in pairs:
                resolved = resolve_pair(table, pair, peers, metric)
                if resolved is None:
                    continue
                a, b = resolved
                loaded = {s: (load(dataset, s, a), load(dataset, s, b)) for s in seeds}
                if not loaded or any(x is None or y is None for x, y in loaded.values()):
                    continue
                by_seed = {}
                for s, (x, y) in loaded.items():
                    assert x is not None and y is not None
                    if x[0].shape != y[0].shape or (as_label_csr(x[0], "gold") != as_label_csr(y[0], "gold")).nnz:
                        raise ValueError(f"{dataset} seed {s}: {a} and {b} were scored on different gold labels")
                    by_seed[s] = (x[0], x[1], y[1])
                gold, pa, pb, strata = stack_seeds(by_seed)
                diff = paired_bootstrap(gold, pa, pb, strata, [metric], resamples, seed=seed)[metric]
                entries.append(
                    {"dataset": dataset, "a": pair[0], "b": pair[1], "b_method": b, "metric": metric}
                    | {k: getattr(diff, k) for k in ("difference", "low", "high", "level", "seeds_agreeing", "seeds")}
                    | {"resamples": resamples}
                )
    results["bootstrap"] = entries
    return entries


def bootstrap_markdown(results: Mapping[str, Any], pairs: Sequence[Pair], metrics: Sequence[str]) -> list[str]:
    """Per dataset and named pair, a − b with its 95% paired bootstrap interval, or 'no saved predictions'."""
    entries = {(e["dataset"], e["a"], e["b"], e["metric"]): e for e in results.get("bootstrap", [])}
    datasets = list(dict.fromkeys(r["dataset"] for r in results.get("rows", [])))
    lines = [
        "## Per dataset: paired bootstrap intervals",
        "",
        "a − b in points ×100 with its 95% paired bootstrap interval over test documents (seeds as strata; micro "
        "and macro F1 recomputed per resample; envs.stats), then how many seeds have a difference of the same sign. "
        '"beats" holds on a dataset only where the interval lies wholly above 0.',
        "",
    ]
    missing: list[tuple[str, str]] = []
    table_lines = ["| dataset | a vs b | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for dataset in datasets:
        for a, b in pairs:
            cells = [entries.get((dataset, a, b, m)) for m in metrics]
            if not any(cells):
                missing.append((dataset, f"{a} vs {b}"))
                continue
            text = []
            for e in cells:
                if e is None:
                    text.append("no saved predictions")
                    continue
                mark = " **beats**" if e["low"] > 0 else (" worse" if e["high"] < 0 else "")
                text.append(
                    f"{100 * e['difference']:+.2f} [{100 * e['low']:+.2f}, {100 * e['high']:+.2f}] "
                    f"({e['seeds_agreeing']}/{e['seeds']}){mark}"
                )
            table_lines.append(f"| {dataset} | {a} vs {b} | " + " | ".join(text) + " |")
    if len(table_lines) > 2:
        lines += table_lines + [""]
    if missing:
        by_dataset: dict[str, list[str]] = {}
        for dataset, pair in missing:
            by_dataset.setdefault(dataset, []).append(pair)
        every = [d for d, got in by_dataset.items() if len(got) == len(pairs)]
        some = [f"{d} ({', '.join(got)})" for d, got in by_dataset.items() if len(got) < len(pairs)]
        if every:
            lines += [f"No saved predictions for any named pair (no interval yet): {', '.join(every)}.", ""]
        if some:
            lines += [f"No saved predictions (no interval yet): {'; '.join(some)}.", ""]
    return lines


# ----------------------------------------------------------------------------- seed-based intervals
def seed_t_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of paired per-seed differences; with one seed
    the interval is the point (no noise estimate). For figures where no predictions were saved."""
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    mean = float(d.mean())
    if d.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return mean, mean - half, mean + half

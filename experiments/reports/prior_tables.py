"""The numbers prior.md is made of: a − b per dataset and metric with its interval (`difference`),
the goal count per system (`goal`), and the two tables built from them (`goal_markdown`,
`pair_markdown`), shared by every section (experiments/reports/prior.py, prior_which.py).

Intervals come from the payload's "bootstrap" entries (paired bootstrap over test documents, seeds
as strata, claim_stats.attach_bootstrap), else a Student-t interval over the seeds' paired
differences (claim_stats.seed_t_interval) where no predictions were saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labelchain.experiments.reports.claim_stats import seed_means, seed_t_interval
from labelchain.experiments.reports.prior_rows import (
    DISAGREE,
    GOAL_DATASETS,
    GOAL_METRICS,
    MATCH,
    PEERS,
    SUBSET_ZERO,
)


@dataclass(frozen=True)
class Diff:
    """a − b on one dataset and metric: seed-mean difference and its 95% interval (which kind)."""

    difference: float
    low: float
    high: float
    kind: str  # "bootstrap" or "t, n seeds"
    seeds: int

    @property
    def _interval(self) -> bool:
        """An interval that says something: the bootstrap's, or a t interval with seed noise (a zero-width
        t interval, seeds that all differ by the same amount, decides nothing)."""
        return self.kind == "bootstrap" or (math.isfinite(self.low) and self.high > self.low)

    @property
    def beats(self) -> bool:
        return self._interval and self.low > 0

    @property
    def worse(self) -> bool:
        return self._interval and self.high < 0

    def cell(self) -> str:
        t = "" if self.kind == "bootstrap" else (" t*" if self.kind.endswith(DISAGREE) else " t")
        if not math.isfinite(self.low):
            why = "saved predictions disagree with the rows" if t == " t*" else "no saved predictions"
            return f"{100 * self.difference:+.2f} (1 seed, {why}: no interval)"
        mark = " **beats**" if self.beats else (" worse" if self.worse else "")
        return f"{100 * self.difference:+.2f} [{100 * self.low:+.2f}, {100 * self.high:+.2f}]{t}{mark}"


def per_seed(rows: Sequence[Mapping[str, Any]], dataset: str, method: str, metric: str) -> dict[int, float]:
    out = {
        r["seed"]: float(r["metrics"].get(metric, math.nan))
        for r in rows
        if (r["dataset"], r["method"]) == (dataset, method)
    }
    return {s: v for s, v in out.items() if math.isfinite(v)}


def difference(results: Mapping[str, Any], dataset: str, a: str, b: str, metric: str) -> Diff | None:
    """Seed-mean a − b over the seeds both have (None if none), with the bootstrap interval when one
    was attached, else the seeds' t interval."""
    rows = results.get("rows", [])
    left, right = per_seed(rows, dataset, a, metric), per_seed(rows, dataset, b, metric)
    seeds = sorted(set(left) & set(right))
    if not seeds:
        return None
    mean, low, high = seed_t_interval([left[s] - right[s] for s in seeds])
    if len(seeds) < 2:  # one seed: no noise estimate, so no interval (never "beats")
        low, high = -math.inf, math.inf
    kind = f"t, {len(seeds)} seeds"
    entry = bootstrap_entry(results, dataset, a, b, metric)
    if entry is not None and abs(entry["difference"] - mean) <= MATCH:
        low, high, kind = entry["low"], entry["high"], "bootstrap"
    elif entry is not None:  # the saved predictions are not what the rows were computed from
        kind += DISAGREE
    return Diff(mean, low, high, kind, len(seeds))


def bootstrap_entry(results: Mapping[str, Any], dataset: str, a: str, b: str, metric: str) -> dict[str, Any] | None:
    for e in results.get("bootstrap", []):
        if (e["dataset"], e["a"], e["b"], e["metric"]) == (dataset, a, b, metric):
            return e
    return None


def goal_metrics(results: Mapping[str, Any], dataset: str, methods: Sequence[str]) -> tuple[str, ...]:
    """GOAL_METRICS, less subset accuracy where every one of `methods` has a seed mean below SUBSET_ZERO."""
    table = seed_means([r for r in results["rows"] if r["dataset"] == dataset], "subset_accuracy").get(dataset, {})
    zero = all(table.get(m, 0.0) < SUBSET_ZERO for m in methods)
    return tuple(m for m in GOAL_METRICS if m != "subset_accuracy" or not zero)


def goal(results: Mapping[str, Any], system: str, grid: str = "prior") -> dict[str, dict[str, Any]]:
    """Per dataset: {"seeds", "metrics", "diffs": {peer: {metric: Diff}}, "ahead" (every seed-mean
    difference > 0), "beats" (every interval above 0)}, or {"missing": why}; `grid` made `system`'s rows."""
    out: dict[str, dict[str, Any]] = {}
    for dataset in results["datasets"]:
        metrics = goal_metrics(results, dataset, (system, *PEERS))
        diffs = {p: {m: difference(results, dataset, system, p, m) for m in metrics} for p in PEERS}
        absent = [name for name in (system, *PEERS) if not per_seed(results["rows"], dataset, name, "P@1")]
        if not any(c["dataset"] == dataset for c in results["cells"][grid]):
            absent = [f"no {grid} grid cell yet"]
        if absent:
            out[dataset] = {"missing": ", ".join(absent)}
            continue
        flat = [d for by_metric in diffs.values() for d in by_metric.values()]
        out[dataset] = {
            "seeds": max(d.seeds for d in flat if d),
            "metrics": metrics,
            "diffs": diffs,
            "ahead": all(d is not None and d.difference > 0 for d in flat),
            "beats": all(d is not None and d.beats for d in flat),
        }
    return out


def not_run(results: Mapping[str, Any], grid: str) -> str:
    """The line a section shows while `grid` has no finished cell: no file at all, or a file still empty."""
    if not results.get("sources", {}).get(grid):
        return f"Not run yet: no {grid} results file."
    return f"Not run yet: the {grid} results file has no finished cell."


def names(datasets: Sequence[str]) -> str:
    return ", ".join(datasets) or "none"


def goal_markdown(results: Mapping[str, Any], system: str, what: str, grid: str = "prior") -> list[str]:
    """The goal table of `system` against both peers and the issue's count (7 of 9 datasets)."""
    table = goal(results, system, grid)
    lines = [f"### {system}: {what}", "", "| dataset | seeds | vs | " + " | ".join(GOAL_METRICS) + " |"]
    lines.append("|---|---|---|" + "---|" * len(GOAL_METRICS))
    for dataset, g in table.items():
        if "missing" in g:
            lines.append(f"| {dataset} | 0 | missing: {g['missing']} |" + " |" * len(GOAL_METRICS))
            continue
        for peer in PEERS:
            cells = [g["diffs"][peer][m].cell() if m in g["metrics"] else "left out (all 0)" for m in GOAL_METRICS]
            lines.append(f"| {dataset} | {g['seeds']} | {peer} | " + " | ".join(cells) + " |")
    done = [d for d, g in table.items() if "missing" not in g]
    ahead = [d for d in done if table[d]["ahead"]]
    beats = [d for d in done if table[d]["beats"]]
    verdict = "met" if len(ahead) >= GOAL_DATASETS else ("missed" if len(done) == len(table) else "open")
    return lines + [
        "",
        f"Ahead of both peers on every metric (seed means): **{len(ahead)} of {len(done)}** datasets with results "
        f"({names(ahead)}); the goal needs {GOAL_DATASETS} of 9: **{verdict}**. With every 95% interval "
        f"wholly above 0: {len(beats)} ({names(beats)}). Missing: {names([d for d in table if d not in done])}.",
        "",
    ]


def pair_markdown(results: Mapping[str, Any], a: str, b: str, metrics: Sequence[str]) -> list[str]:
    """a − b per dataset where any metric has one, with the seeds both rows have."""
    lines = ["| dataset | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for dataset in results["datasets"]:
        diffs = [difference(results, dataset, a, b, m) for m in metrics]
        if any(diffs):
            seeds = max(d.seeds for d in diffs if d)
            lines.append(f"| {dataset} | {seeds} | " + " | ".join(d.cell() if d else "—" for d in diffs) + " |")
    return lines + [""]


def verdicts(results: Mapping[str, Any], a: str, b: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Datasets where a is ahead of b on every goal metric and behind on every one (seed means), and the
    dataset-metric cells whose interval lies wholly above 0 and wholly below 0."""
    ahead, behind, above, below = [], [], [], []
    for dataset in results["datasets"]:
        diffs = {m: difference(results, dataset, a, b, m) for m in GOAL_METRICS}
        present = {m: d for m, d in diffs.items() if d is not None}
        if not present:
            continue
        ahead += [dataset] if all(d.difference > 0 for d in present.values()) else []
        behind += [dataset] if all(d.difference < 0 for d in present.values()) else []
        above += [f"{dataset} {m}" for m, d in present.items() if d.beats]
        below += [f"{dataset} {m}" for m, d in present.items() if d.worse]
    return ahead, behind, above, below


def section_head(results: Mapping[str, Any], title: str, grid: str, named: str, intro: str) -> tuple[list[str], bool]:
    """A secondary grid's section start: its title and `intro` ending with the grid's unfinished cells
    (`named`: how the text names the grid), or "Not run yet" and False while it has no finished cell."""
    lines = [f"## {title}", ""]
    if not results["cells"].get(grid):
        return lines + [not_run(results, grid), ""], False
    missing = ", ".join(results["missing_cells"][grid]) or "none"
    return lines + [f"{intro} Cells of the {named} not finished yet (left out, not filled in): {missing}.", ""], True

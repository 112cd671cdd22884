"""prior.md from prior.json: issue 16's goal table, its ablations and ECC, computed from rows alone.

`combine` merges three compare_orderings results files into one payload (rows as in orderings.json):
the prior grid's chain rows renamed `<method>+prior`, the no-label-history grid's `<method>+prior-nohistory`,
and the no-prior grid's rows (the chain alone and the tuned peers) under their own names, all kept
only for the (dataset, seed) cells the prior grid finished, so every comparison is paired on the
same seeds, splits and test documents. `val_best+prior` is, per seed, the prior-chain row with the
best validation score on the grid's select metric (the ensemble has none, so it is not a candidate).
`render_markdown` reads only that payload; intervals come from its "bootstrap" entries (paired
bootstrap over test documents, seeds as strata, claim_stats.attach_bootstrap), else a Student-t
interval over the seeds' paired differences (claim_stats.seed_t_interval) where no predictions were saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labelchain.envs.metrics import HEADLINE
from labelchain.experiments.reports.claim_stats import (
    BETTER_PEER,
    across_datasets_markdown,
    seed_means,
    seed_t_interval,
)
from labelchain.experiments.reports.orderings import METHOD_ORDER, claims_markdown, summarize

from labelchain.experiments.reports.prior_rows import (
    ABLATION_METRICS,
    CHAIN_ALONE,
    DISAGREE,
    ECC,
    FIXED,
    GOAL_DATASETS,
    GOAL_METRICS,
    LEARNED,
    LEARNED_GOAL,
    MATCH,
    NOHISTORY,
    NOHISTORY_GOAL,
    PEERS,
    PRIOR,
    SUBSET_ZERO,
    VAL_BEST,
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


def consistency_markdown(results: Mapping[str, Any]) -> list[str]:
    """Where saved predictions do not reproduce the rows (their intervals are not used), and prior-chain
    rows equal to the prior's own peer on every ranking metric or on both set metrics (a rule chosen
    on validation that returned the peer's output)."""
    lines = ["## Consistency: predictions vs rows, rows equal to the peer", ""]
    bad: dict[str, set[str]] = {}
    for e in results.get("bootstrap", []):
        d = difference(results, e["dataset"], e["a"], e["b"], e["metric"])
        if d is not None and d.kind.endswith(DISAGREE):
            bad.setdefault(f"{e['dataset']} {e['a']} − {e['b']}", set()).add(e["metric"])
    text = "; ".join(f"{k} ({', '.join(m for m in GOAL_METRICS if m in v)})" for k, v in bad.items())
    lines += [
        "Saved predictions whose bootstrap difference is not the rows' seed-mean difference (marked t*: the "
        f"interval is the seeds' t interval instead): {text or 'none'}.",
        "",
    ]
    peer = results.get("prior_peer")
    rows = {(r["dataset"], r["seed"], r["method"]): r["metrics"] for r in results["rows"]}
    same: dict[str, list[str]] = {"ranking": [], "sets": []}
    for (dataset, seed, method), metrics in rows.items():
        other = rows.get((dataset, seed, peer or ""))
        if not method.endswith(PRIOR) or method == VAL_BEST or other is None:
            continue
        for what, names in (("ranking", HEADLINE), ("sets", ("example_f1", "subset_accuracy"))):
            if all(metrics.get(m) == other.get(m) for m in names):
                same[what].append(f"{dataset}:{seed} {method}")
    for what, hits in same.items():
        lines += [
            f"Prior-chain rows equal to {peer} on every {what} metric: {len(hits)} ({', '.join(hits) or 'none'}).",
            "",
        ]
    return lines


def goal_metrics(results: Mapping[str, Any], dataset: str, methods: Sequence[str]) -> tuple[str, ...]:
    """GOAL_METRICS, less subset accuracy where every one of `methods` has a seed mean below SUBSET_ZERO."""
    table = seed_means([r for r in results["rows"] if r["dataset"] == dataset], "subset_accuracy").get(dataset, {})
    zero = all(table.get(m, 0.0) < SUBSET_ZERO for m in methods)
    return tuple(m for m in GOAL_METRICS if m != "subset_accuracy" or not zero)


def goal(results: Mapping[str, Any], system: str) -> dict[str, dict[str, Any]]:
    """Per dataset: {"seeds", "metrics", "diffs": {peer: {metric: Diff}}, "ahead" (every seed-mean
    difference > 0), "beats" (every interval above 0)}, or {"missing": why}."""
    out: dict[str, dict[str, Any]] = {}
    for dataset in results["datasets"]:
        metrics = goal_metrics(results, dataset, (system, *PEERS))
        diffs = {p: {m: difference(results, dataset, system, p, m) for m in metrics} for p in PEERS}
        absent = [name for name in (system, *PEERS) if not per_seed(results["rows"], dataset, name, "P@1")]
        if not any(c["dataset"] == dataset for c in results["cells"]["prior"]):
            absent = ["no prior-grid cell yet"]
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


def _names(datasets: Sequence[str]) -> str:
    return ", ".join(datasets) or "none"


def goal_markdown(results: Mapping[str, Any], system: str, what: str) -> list[str]:
    table = goal(results, system)
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
        f"({_names(ahead)}); the goal needs {GOAL_DATASETS} of 9: **{verdict}**. With every 95% interval "
        f"wholly above 0: {len(beats)} ({_names(beats)}). Missing: {_names([d for d in table if d not in done])}.",
        "",
    ]


def means_markdown(results: Mapping[str, Any]) -> list[str]:
    """Seed means ×100 of the methods the ablations compare, per dataset."""
    methods = (*PEERS, ECC, CHAIN_ALONE, FIXED, VAL_BEST, "ensemble" + NOHISTORY)
    lines = [
        "| dataset | method | seeds | " + " | ".join(GOAL_METRICS) + " |",
        "|---|---|---|" + "---|" * len(GOAL_METRICS),
    ]
    for dataset in results["datasets"]:
        for method in methods:
            values = [per_seed(results["rows"], dataset, method, m) for m in GOAL_METRICS]
            if values[0]:
                cells = [f"{100 * sum(v.values()) / len(v):.2f}" if v else "—" for v in values]
                lines.append(f"| {dataset} | {method} | {len(values[0])} | " + " | ".join(cells) + " |")
    return lines + [""]


def pair_markdown(results: Mapping[str, Any], a: str, b: str, metrics: Sequence[str]) -> list[str]:
    lines = ["| dataset | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for dataset in results["datasets"]:
        diffs = [difference(results, dataset, a, b, m) for m in metrics]
        if any(diffs):
            seeds = max(d.seeds for d in diffs if d)
            lines.append(f"| {dataset} | {seeds} | " + " | ".join(d.cell() if d else "—" for d in diffs) + " |")
    return lines + [""]


def nohistory_markdown(results: Mapping[str, Any]) -> list[str]:
    """(d) vs (c): the method both grids have (ensemble first), P@1 and example F1, and the count."""
    lines = ["### (d) vs (c): the label history's worth", ""]
    if not results["cells"]["prior_nohistory"]:
        return lines + ["Not run yet: no prior_nohistory results file (or no cell finished).", ""]
    lines += ["(d) − (c), points ×100 with 95% intervals; below 0 = removing the label history costs.", ""]
    below, below_ci, compared = [], [], []
    lines += ["| dataset | method | seeds | " + " | ".join(ABLATION_METRICS) + " |", "|---|---|---|---|---|"]
    for dataset in results["datasets"]:
        for method in LEARNED[::-1]:
            diffs = [difference(results, dataset, method + NOHISTORY, method + PRIOR, m) for m in ABLATION_METRICS]
            if all(diffs):
                compared.append(dataset)
                cells = " | ".join(d.cell() for d in diffs if d)
                lines.append(f"| {dataset} | {method} | {max(d.seeds for d in diffs if d)} | {cells} |")
                below += [dataset] if any(d.difference < 0 for d in diffs if d) else []
                below_ci += [dataset] if any(d.worse for d in diffs if d) else []
                break
    return lines + [
        "",
        f"(d) below (c) on P@1 or example F1 (seed means): **{len(below)} of {len(compared)}** datasets ({_names(below)}); "
        f"the goal needs {NOHISTORY_GOAL} of 9. With the interval wholly below 0: {len(below_ci)} ({_names(below_ci)}).",
        "",
    ]


def learned_markdown(results: Mapping[str, Any]) -> list[str]:
    """(e): the prior grid's claims (orderings.md's) and the learned-beats-best-fixed cell count with intervals."""
    rows = [r | {"method": r["method"][: -len(PRIOR)]} for r in results["rows"] if r["method"].endswith(PRIOR)]
    rows = [r for r in rows if r["method"] != "val_best"]
    table = summarize(rows)
    order = tuple(m for m in METHOD_ORDER[:10] if any(m in methods for methods in table.values()))
    lines = [
        "### (e) Fixed orderings vs learned orders under the prior",
        "",
        "P@1 seed means ×100 (every metric: the prior grid's orderings.md).",
        "",
    ]
    lines += ["| dataset | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for dataset, methods in table.items():
        lines.append(
            f"| {dataset} | "
            + " | ".join(f"{100 * methods[m].mean('P@1'):.2f}" if m in methods else "—" for m in order)
            + " |"
        )
    lines += [""] + ["#" + line if line.startswith("#") else line for line in claims_markdown(table)]
    for method in LEARNED:
        lines += [f"{method} − best_fixed under the prior, 95% intervals:", ""]
        lines += pair_markdown(results, method + PRIOR, "best_fixed" + PRIOR, HEADLINE)
    cells = [difference(results, d, FIXED, "best_fixed" + PRIOR, m) for d in table for m in HEADLINE]
    ahead = sum(c is not None and c.difference > 0 for c in cells)
    beats = sum(c is not None and c.beats for c in cells)
    return lines + [
        f"Learned orders (ensemble of rearrange + combined) above the best fixed ordering under the prior: **{ahead} of "
        f"{len(cells)}** dataset × ranking-metric cells (seed means), {beats} with the interval wholly above 0; the goal "
        f"needs {LEARNED_GOAL} of 45.",
        "",
    ]


def ecc_markdown(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "## ECC (classifier chains) beside the prior chain",
        "",
        f"{ECC} − {FIXED}, points ×100, 95% intervals:",
        "",
    ]
    lines += pair_markdown(results, ECC, FIXED, GOAL_METRICS)
    wins = [
        f"{d} {m}"
        for d in results["datasets"]
        for m in GOAL_METRICS
        if (x := difference(results, d, ECC, FIXED, m)) is not None and x.beats
    ]
    return lines + [f"ECC beats the prior chain (interval wholly above 0) on: {', '.join(wins) or 'no cell'}.", ""]


def cells_markdown(results: Mapping[str, Any]) -> list[str]:
    lines = ["## Cells: done, missing, wall time", ""]
    for grid, cells in results["cells"].items():
        by_dataset: dict[str, list[float]] = {}
        for c in cells:
            by_dataset.setdefault(c["dataset"], []).append(c["wall_s"] or 0.0)
        per = "; ".join(f"{d}: seeds {len(w)}, {sum(w) / 60:.1f} min" for d, w in by_dataset.items())
        if not results.get("sources", {}).get(grid):
            lines.append(f"- {grid}: no results file.")
            continue
        total = sum(sum(w) for w in by_dataset.values()) / 60
        lines.append(f"- {grid}: {len(cells)} cells done, {total:.1f} min of cell wall time ({per or 'none'}).")
        missing = results["missing_cells"][grid]
        lines.append(f"  Missing: {', '.join(missing) or 'none'}.")
    sources = results.get("sources", {})
    lines += ["", "Made by: " + "; ".join(f"{k}: `{v}`" for k, v in sources.items() if v), ""]
    return lines


def render_markdown(results: Mapping[str, Any]) -> str:
    """The whole prior.md."""
    choice = "fixed and learned rows; per seed, the best validation " + results["select_metric"]
    if not results["validation_choice"]:
        choice = "NOT SHOWN where rows carry no validation metrics (never picked on test)"
    lines = [
        "# Peer scores as the chain's prior: issue 16's goal, ablations and ECC (test split)",
        "",
        "Rows: the prior grid (`<method>+prior`), the no-label-history grid (`<method>+prior-nohistory`) and the "
        "no-prior grid (chains, tuned peers) on the same cells, seeds, splits and test documents. A cell "
        "a − b: seed-mean difference in points ×100 with its 95% interval: paired bootstrap over test documents, "
        "seeds as strata (claim_stats.attach_bootstrap), or, marked t, a Student-t interval over the seeds' paired "
        "differences where no predictions were saved (t*: saved predictions that do not reproduce the rows, see Consistency); **beats** where the interval lies wholly above 0. "
        f"Subset accuracy is left out on a dataset where every compared method's seed mean is below {100 * SUBSET_ZERO:.1f} points.",
        "",
        "## Goal: the prior chain vs both tuned peers",
        "",
    ]
    lines += goal_markdown(results, FIXED, "fixed in advance (rearrange + combined, fused on validation)")
    lines += goal_markdown(results, VAL_BEST, f"chosen on validation among {choice}")
    picked = [f"{r['dataset']}:{r['seed']} {r['chosen']}" for r in results["rows"] if r["method"] == VAL_BEST]
    lines += [f"Chosen on validation (dataset:seed row): {', '.join(picked) or 'none'}.", ""]
    lines += [
        "## Ablations",
        "",
        "Seed means ×100: (a) the peers, (b) the chain alone, (c) the prior chain, (d) without label history.",
        "",
    ]
    lines += means_markdown(results)
    lines += ["### (c) vs (b): what the prior adds to the chain", "", f"{FIXED} − {CHAIN_ALONE}:", ""]
    lines += pair_markdown(results, FIXED, CHAIN_ALONE, GOAL_METRICS)
    lines += nohistory_markdown(results) + learned_markdown(results) + ecc_markdown(results)
    if results["rows"]:
        ranked = (*PEERS, ECC, CHAIN_ALONE, FIXED)
        named = ((FIXED, BETTER_PEER), (FIXED, CHAIN_ALONE), (FIXED, ECC))
        lines += across_datasets_markdown(results["rows"], GOAL_METRICS, ranked, named, None, PEERS)
    return "\n".join(lines + consistency_markdown(results) + cells_markdown(results))

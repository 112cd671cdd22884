"""prior.md from prior.json: issue 16's goal table, its ablations and ECC, computed from rows alone.

`prior_rows.combine` merges six compare_orderings results files into one payload (rows as in
orderings.json): the OvR-prior grid's chain rows renamed `<method>+prior-ovr`, the no-label-history
grid's `<method>+prior-ovr+nohistory`, the Omikuji-prior grid's `<method>+prior-omikuji`, the
shortlist-50 grid's `<method>+prior-ovr+sl50`, the per-label
(a, b) grid's `<method>+prior-ovr+per_label`, and the
no-prior grid's rows (the chain alone and the tuned peers) under their own names, all kept only for
the (dataset, seed) cells the OvR-prior grid finished, so every comparison is paired on the same
seeds, splits and test documents. `val_best+prior-ovr` is, per seed, the OvR-prior row with the best
validation score on the grid's select metric (the ensemble has none, so it is not a candidate);
`val_best+prior-any` the same among both priors' rows. `render_markdown` reads only that payload;
its numbers and tables come from prior_tables.py, the OvR-vs-Omikuji section from prior_which.py,
the shortlist section from prior_shortlist.py, the per-label one from prior_scale.py.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from labelchain.envs.metrics import HEADLINE
from labelchain.experiments.reports.claim_stats import BETTER_PEER, across_datasets_markdown
from labelchain.experiments.reports.orderings import METHOD_ORDER, claims_markdown, summarize
from labelchain.experiments.reports.prior_rows import (
    ABLATION_METRICS,
    CHAIN_ALONE,
    DISAGREE,
    ECC,
    FIXED,
    FIXED_OMIKUJI,
    FIXED_PER_LABEL,
    FIXED_SL50,
    GOAL_METRICS,
    GRID_PEER,
    GRIDS,
    LEARNED,
    LEARNED_GOAL,
    NOHISTORY,
    NOHISTORY_GOAL,
    OMIKUJI,
    PEERS,
    PRIOR,
    PER_LABEL,
    SL50,
    SUBSET_ZERO,
    VAL_ANY,
    VAL_BEST,
)
from labelchain.experiments.reports.prior_tables import (
    difference,
    goal_markdown,
    names,
    not_run,
    pair_markdown,
    per_seed,
)
from labelchain.experiments.reports.prior_scale import scale_markdown
from labelchain.experiments.reports.prior_shortlist import shortlist_markdown
from labelchain.experiments.reports.prior_which import which_markdown


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
    rows = {(r["dataset"], r["seed"], r["method"]): r["metrics"] for r in results["rows"]}
    for suffix in (PRIOR, OMIKUJI, SL50, PER_LABEL):
        peer = GRID_PEER[suffix]
        if not any(method.endswith(suffix) for _, _, method in rows):
            continue
        same: dict[str, list[str]] = {"ranking": [], "sets": []}
        for (dataset, seed, method), metrics in rows.items():
            other = rows.get((dataset, seed, peer))
            if not method.endswith(suffix) or method.startswith("val_best") or other is None:
                continue
            for what, kept in (("ranking", HEADLINE), ("sets", ("example_f1", "subset_accuracy"))):
                if all(metrics.get(m) == other.get(m) for m in kept):
                    same[what].append(f"{dataset}:{seed} {method}")
        for what, hits in same.items():
            lines += [
                f"`*{suffix}` rows equal to {peer} on every {what} metric: {len(hits)} ({', '.join(hits) or 'none'}).",
                "",
            ]
    return lines


def means_markdown(results: Mapping[str, Any]) -> list[str]:
    """Seed means ×100 of the methods the ablations compare, per dataset."""
    methods = (
        *PEERS,
        ECC,
        CHAIN_ALONE,
        FIXED,
        VAL_BEST,
        "ensemble" + NOHISTORY,
        FIXED_OMIKUJI,
        VAL_ANY,
        FIXED_SL50,
        FIXED_PER_LABEL,
    )
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


def nohistory_markdown(results: Mapping[str, Any]) -> list[str]:
    """(d) vs (c): the method both grids have (ensemble first), P@1 and example F1, and the count."""
    lines = ["### (d) vs (c): the label history's worth", ""]
    if not results["cells"]["prior_nohistory"]:
        return lines + [not_run(results, "prior_nohistory"), ""]
    lines += ["(d) − (c), points ×100 with 95% intervals; below 0 = removing the label history costs.", ""]
    below, below_ci, compared, seeds = [], [], [], []
    lines += ["| dataset | method | seeds | " + " | ".join(ABLATION_METRICS) + " |", "|---|---|---|---|---|"]
    for dataset in results["datasets"]:
        for method in LEARNED[::-1]:
            diffs = [difference(results, dataset, method + NOHISTORY, method + PRIOR, m) for m in ABLATION_METRICS]
            if all(diffs):
                compared.append(dataset)
                cells = " | ".join(d.cell() for d in diffs if d)
                seeds.append(f"{dataset} {max(d.seeds for d in diffs if d)}")
                lines.append(f"| {dataset} | {method} | {seeds[-1].split()[-1]} | {cells} |")
                below += [dataset] if any(d.difference < 0 for d in diffs if d) else []
                below_ci += [dataset] if any(d.worse for d in diffs if d) else []
                break
    return lines + [
        "",
        f"(d) below (c) on P@1 or example F1 (seed means): **{len(below)} of {len(compared)}** datasets ({names(below)}); "
        f"the goal needs {NOHISTORY_GOAL} of 9. With the interval wholly below 0: {len(below_ci)} ({names(below_ci)}).",
        f"Seeds compared (both grids finished): {names(seeds)}; not compared yet: "
        f"{names([d for d in results['datasets'] if d not in compared])}.",
        "",
    ]


def learned_markdown(results: Mapping[str, Any]) -> list[str]:
    """(e): the prior grid's claims (orderings.md's) and the learned-beats-best-fixed cell count with intervals."""
    rows = [r | {"method": r["method"][: -len(PRIOR)]} for r in results["rows"] if r["method"].endswith(PRIOR)]
    rows = [r for r in rows if r["method"] != "val_best"]  # the OvR-prior grid's rows, as its orderings.md
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
    """Per grid: cells done and missing, wall time, and the commands that made the cells used."""
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
    lines += [
        "",
        "Made by (each grid's commands, with how many of the cells used here each made; paths repo-relative):",
        "",
    ]
    for grid, commands in results.get("commands", {}).items():
        folder = GRIDS[grid][2]
        made = "; ".join(f"`{repo_relative(c['command'], folder)}` ({c['cells']})" for c in commands)
        lines.append(f"- {grid}: {made or 'no cell used'}")
    return lines + [""]


def repo_relative(command: str, out_dir: str) -> str:
    """A grid's recorded command as the repo would run it: an absolute --out-dir becomes the grid's
    folder under experiments/results (where its file is committed), any other absolute path `<flag>`
    (--runs-dir: `<runs-dir>`), so prior.md names no session's folders; the file keeps its command."""
    words = shlex.split(command)
    out = []
    for i, word in enumerate(words):
        flag = words[i - 1] if i else ""
        if not word.startswith("/"):
            out.append(shlex.quote(word))
        elif flag == "--out-dir":
            out.append(out_dir)
        else:
            out.append(f"<{flag[2:] or 'path'}>" if flag.startswith("--") else "<path>")
    return " ".join(out)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The whole prior.md."""
    choice = "fixed and learned rows; per seed, the best validation " + results["select_metric"]
    if not results["validation_choice"]:
        choice = "NOT SHOWN where rows carry no validation metrics (never picked on test)"
    lines = [
        "# Peer scores as the chain's prior: issue 16's goal, ablations and ECC (test split)",
        "",
        f"Rows: the OvR-prior grid (`<method>{PRIOR}`), the no-label-history grid (`<method>{NOHISTORY}`), the "
        f"Omikuji-prior grid (`<method>{OMIKUJI}`), the shortlist-50 grid (`<method>{SL50}`), the per-label (a, b) grid (`<method>{PER_LABEL}`) and the no-prior grid (chains, tuned peers) on the same cells, "
        "seeds, splits and test documents. A cell "
        "a − b: seed-mean difference in points ×100 with its 95% interval: paired bootstrap over test documents, "
        "seeds as strata (claim_stats.attach_bootstrap), or, marked t, a Student-t interval over the seeds' paired "
        "differences where no predictions were saved (t*: saved predictions that do not reproduce the rows, see Consistency); **beats** where the interval lies wholly above 0. "
        f"Subset accuracy is left out on a dataset where every compared method's seed mean is below {100 * SUBSET_ZERO:.1f} points.",
        "",
        "## Goal: the prior chain (OvR prior) vs both tuned peers",
        "",
    ]
    lines += goal_markdown(results, FIXED, "fixed in advance (rearrange + combined, fused on validation)")
    lines += goal_markdown(results, VAL_BEST, f"chosen on validation among {choice}")
    picked = [f"{r['dataset']}:{r['seed']} {r['chosen']}" for r in results["rows"] if r["method"] == VAL_BEST]
    lines += [f"Chosen on validation (dataset:seed row): {', '.join(picked) or 'none'}.", ""]
    lines += which_markdown(results) + shortlist_markdown(results) + scale_markdown(results)
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
        ranked = [*PEERS, ECC, CHAIN_ALONE, FIXED]  # a method missing on some dataset is dropped and named
        named = [(FIXED, BETTER_PEER), (FIXED, CHAIN_ALONE), (FIXED, ECC)]
        if any(r["method"] == FIXED_OMIKUJI for r in results["rows"]):  # Holm counts only the pairs tested
            ranked.append(FIXED_OMIKUJI)
            named += [(FIXED_OMIKUJI, BETTER_PEER), (FIXED_OMIKUJI, FIXED)]
        lines += across_datasets_markdown(results["rows"], GOAL_METRICS, ranked, named, None, PEERS)
    return "\n".join(lines + consistency_markdown(results) + cells_markdown(results))

"""prior.md's section "Shortlist 50 vs the full label set (OvR prior)": the same chain ensemble under
the OvR prior with each document's action space cut to its top 50 OvR labels (`--shortlist 50`) and
with every label, beside the matcher's recall@50 (the gold labels the shortlisted chain can never emit).

Reads only the payload of prior_rows.combine (the shortlist grid's rows are `<method>+prior-ovr+sl50`,
kept on the OvR-prior grid's cells) and its "shortlist_recall" entry (`recall_at`, from
prior_recall.json); its numbers come from prior_tables.py, as every section's do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labelchain.experiments.reports.prior_rows import FIXED, FIXED_SL50, GOAL_METRICS, SHORTLIST
from labelchain.experiments.reports.prior_tables import difference, names, pair_markdown, section_head, verdicts

GRID = "prior_sl50"
MATCHER = "ovr_logistic"  # the shortlist grid's prior, whose top 50 labels are the shortlist


def recall_at(recall: Mapping[str, Any], m: int = SHORTLIST, peer: str = MATCHER) -> dict[str, dict[str, Any]]:
    """Per dataset of a prior_recall.json payload: its label count L and `peer`'s test recall@m (seed
    mean, with the seeds; prior_recall caps M at L, so at L ≤ m it is recall at L)."""
    found: dict[str, dict[str, Any]] = {}
    for r in recall.get("rows", []):
        if r.get("peer") == peer and str(m) in r.get("recall", {}):
            entry = found.setdefault(r["dataset"], {"n_labels": r["n_labels"], "values": [], "seeds": []})
            entry["values"].append(float(r["recall"][str(m)]))
            entry["seeds"].append(r["seed"])
    return {
        d: {"n_labels": e["n_labels"], "recall": sum(e["values"]) / len(e["values"]), "seeds": e["seeds"]}
        for d, e in found.items()
    }


def _recall_markdown(results: Mapping[str, Any], compared: Sequence[str]) -> list[str]:
    """Per dataset: L, the matcher's recall@50 and why a dataset has no row in the difference table."""
    recall = results.get("shortlist_recall") or {}
    missing = {c.split(":")[0] for c in results["missing_cells"].get(GRID, [])}
    lines = [f"| dataset | L | R@{SHORTLIST} ({MATCHER}, test) | shortlist grid |", "|---|---|---|---|"]
    for dataset in results["datasets"]:
        r = recall.get(dataset)
        size, value = "—", "— (not in prior_recall.json)"
        if r:
            size, seeds = f"{r['n_labels']}", ", ".join(map(str, r["seeds"]))
            value = f"{100 * r['recall']:.2f} (seed{'s' * (len(r['seeds']) > 1)} {seeds})"
        if dataset in compared:
            state = "compared below" + (" (cells still missing)" if dataset in missing else "")
        elif dataset in missing:
            state = "not finished yet"
        elif r and r["n_labels"] <= SHORTLIST:
            state = f"not run: L ≤ {SHORTLIST}"
        else:
            state = "not run by the grid"
        lines.append(f"| {dataset} | {size} | {value} | {state} |")
    return lines + [""]


def shortlist_markdown(results: Mapping[str, Any]) -> list[str]:
    """The whole section; "Not run yet" while the shortlist grid has no finished cell."""
    intro = (
        f"{FIXED_SL50} − {FIXED}: the same chain ensemble (rearrange + combined, fused on validation) under the "
        f"OvR prior, its actions cut to each document's top {SHORTLIST} OvR labels + STOP (`--shortlist {SHORTLIST}`) "
        "vs every label; points ×100, 95% intervals; above 0: the shortlist is better. A gold label outside the "
        f"shortlist can never be emitted: R@{SHORTLIST} is the share the matcher keeps (experiments/results/"
        "prior_recall.json). With the shortlist every decoding and teacher-forcing step scores M + 1 actions, "
        "O(M) not O(L); the output layer's Adam update stays dense (docs/prior-scale.md). `--shortlist` is "
        f"refused where L < {SHORTLIST} and cuts nothing at L = {SHORTLIST}, so the grid runs only datasets "
        f"with more than {SHORTLIST} labels."
    )
    title = f"Shortlist {SHORTLIST} vs the full label set (OvR prior)"
    lines, ran = section_head(results, title, GRID, "shortlist grid", intro)
    if not ran:
        return lines
    compared = [
        d for d in results["datasets"] if any(difference(results, d, FIXED_SL50, FIXED, m) for m in GOAL_METRICS)
    ]
    lines += _recall_markdown(results, compared) + pair_markdown(results, FIXED_SL50, FIXED, GOAL_METRICS)
    ahead, behind, above, below = verdicts(results, FIXED_SL50, FIXED)
    return lines + [
        f"The shortlist gains on every metric (seed means): {names(ahead)}; costs on every metric: {names(behind)}. "
        f"Intervals wholly above 0 (gains): {len(above)} ({names(above)}); wholly below 0 (costs): "
        f"{len(below)} ({names(below)}).",
        "",
    ]

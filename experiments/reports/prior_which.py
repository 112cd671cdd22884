"""prior.md's section "Which prior: OvR vs Omikuji": the same chain ensemble under each peer's prior,
the goal table for the Omikuji-prior chain, and the per-seed validation choice between the priors.

Reads only the payload of prior_rows.combine (the Omikuji-prior grid's rows are `<method>+prior-omikuji`,
kept on the OvR-prior grid's cells); its numbers come from prior_tables.py, as every section's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelchain.experiments.reports.prior_rows import FIXED, FIXED_OMIKUJI, GOAL_METRICS, OMIKUJI, VAL_ANY
from labelchain.experiments.reports.prior_tables import goal_markdown, names, pair_markdown, section_head, verdicts

GRID = "prior_omikuji"


def choices_markdown(results: Mapping[str, Any]) -> list[str]:
    """Per dataset, the row chosen on validation among both priors' rows in each seed, and how often
    it was an Omikuji-prior row."""
    picked: dict[str, list[str]] = {}
    for r in results["rows"]:
        if r["method"] == VAL_ANY:
            picked.setdefault(r["dataset"], []).append(f"{r['seed']}: {r['chosen']}")
    parts = [
        f"{d} ({sum(OMIKUJI in c for c in cs)} of {len(cs)} seeds Omikuji; {', '.join(cs)})"
        for d in results["datasets"]
        if (cs := picked.get(d))
    ]
    return [f"Chosen on validation between the priors, per dataset (seed: row): {'; '.join(parts) or 'none'}.", ""]


def which_markdown(results: Mapping[str, Any]) -> list[str]:
    """The whole section; "Not run yet" while the Omikuji-prior grid has no finished cell."""
    intro = (
        f"{FIXED_OMIKUJI} − {FIXED}: the same chain ensemble (rearrange + combined, fused on validation) under "
        "each peer's prior, points ×100, 95% intervals; above 0: the Omikuji prior is better."
    )
    lines, ran = section_head(results, "Which prior: OvR vs Omikuji", GRID, "Omikuji-prior grid", intro)
    if not ran:
        return lines
    lines += pair_markdown(results, FIXED_OMIKUJI, FIXED, GOAL_METRICS)
    ahead, behind, above, below = verdicts(results, FIXED_OMIKUJI, FIXED)
    lines += [
        f"Omikuji prior ahead on every metric (seed means): {names(ahead)}; behind on every metric: {names(behind)}. "
        f"Intervals wholly above 0: {len(above)} ({names(above)}); wholly below 0: {len(below)} ({names(below)}).",
        "",
    ]
    lines += goal_markdown(results, FIXED_OMIKUJI, "the Omikuji-prior chain, fixed in advance", GRID)
    choice = "fixed and learned rows of both prior grids; per seed, the best validation " + results["select_metric"]
    if not results.get("validation_choice_any"):
        choice = "NOT SHOWN where rows carry no validation metrics (never picked on test)"
    lines += goal_markdown(results, VAL_ANY, f"chosen on validation among {choice}", GRID)
    return lines + choices_markdown(results)

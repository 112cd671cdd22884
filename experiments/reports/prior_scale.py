"""prior.md's section "One (a, b) or one per label (OvR prior)": the same chain ensemble under the OvR
prior with `--prior-scale per_label` (logits + a_l · prior_l + b_l) and with the shared pair (the grid
every other section reads), which issue 16 asks to measure both ways.

Reads only the payload of prior_rows.combine (the per-label grid's rows are `<method>+prior-ovr+per_label`,
kept on the OvR-prior grid's cells); its numbers come from prior_tables.py, as every section's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelchain.experiments.reports.prior_rows import FIXED, FIXED_PER_LABEL, GOAL_METRICS
from labelchain.experiments.reports.prior_tables import names, pair_markdown, section_head, verdicts

GRID = "prior_perlabel"


def scale_markdown(results: Mapping[str, Any]) -> list[str]:
    """The whole section; "Not run yet" while the per-label grid has no finished cell."""
    intro = (
        f"{FIXED_PER_LABEL} − {FIXED}: the same chain ensemble (rearrange + combined, fused on validation) under "
        "the OvR prior with a learned (a, b) per label (`--prior-scale per_label`) vs one shared pair; points ×100, "
        "95% intervals; above 0: per-label is better."
    )
    lines, ran = section_head(results, "One (a, b) or one per label (OvR prior)", GRID, "per-label grid", intro)
    if not ran:
        return lines
    lines += pair_markdown(results, FIXED_PER_LABEL, FIXED, GOAL_METRICS)
    ahead, behind, above, below = verdicts(results, FIXED_PER_LABEL, FIXED)
    return lines + [
        f"Per-label ahead on every metric (seed means): {names(ahead)}; behind on every metric: {names(behind)}. "
        f"Intervals wholly above 0: {len(above)} ({names(above)}); wholly below 0: {len(below)} ({names(below)}).",
        "",
    ]

"""The strength table's markdown: mean ± std over seeds per dataset and method, and a verdict per
goal cell (does it hold, by how much, is the gap within seed noise), computed from the rows alone.

Seed noise: the gap is taken per seed (paired: same split, same seed) and called "within seed
noise" when its mean is no larger than its sample standard deviation over seeds; one seed gives
no noise estimate and says so.
"""

from __future__ import annotations

import json
from collections import defaultdict

from labelchain.envs.metrics import HEADLINE as RANKING
from labelchain.experiments.reports.claim_stats import across_datasets_markdown, bootstrap_markdown
from labelchain.experiments.run.common import mean_and_std, percent_mean_std
from labelchain.experiments.reports.orderings import TABLE_METRICS

METHOD_ORDER = (
    "freq2rare",
    "rare2freq",
    "fixed_random",
    "always_random",
    "best_fixed",
    "rearrange",
    "combined",
    "ensemble_chains",
    "ensemble_chains_peers",
    "ovr_logistic",
    "omikuji",
    "ecc",
    "label_frequency",
)
CHAINS = ("rearrange", "combined")
PEERS = ("ovr_logistic", "omikuji")  # the tuned peers of the goals (and the better-peer column)
REFERENCE_PEERS = ("ecc",)  # classifier chains (Read et al.): a peer row and verdicts when the grid scored it
ENSEMBLE = "ensemble_chains_peers"


def by_cell(rows: list[dict]) -> dict[tuple[str, str], dict[int, dict]]:
    """(dataset, method) -> seed -> metrics (plus wall_time_s)."""
    table: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for row in rows:
        table[(row["dataset"], row["method"])][row["seed"]] = {**row["metrics"], "wall_time_s": row["wall_time_s"]}
    return table


def gap(table, dataset: str, a: str, b: str, metric: str) -> dict | None:
    """Paired gap a - b over the seeds both have: mean, std, relative to b, seeds, verdict words."""
    left, right = table.get((dataset, a), {}), table.get((dataset, b), {})
    seeds = sorted(set(left) & set(right))
    if not seeds:
        return None
    diffs = [left[s][metric] - right[s][metric] for s in seeds]
    mean, std = mean_and_std(diffs)
    base = mean_and_std([right[s][metric] for s in seeds])[0]
    relative = mean / base if base else float("nan")
    if len(seeds) < 2:
        noise = "one seed: noise unknown"
    else:
        noise = "within seed noise" if abs(mean) <= std else "beyond seed noise"
    return {
        "mean": mean,
        "std": std,
        "relative": relative,
        "seeds": len(seeds),
        "holds": mean > 0,
        "wins": sum(d > 0 for d in diffs),
        "noise": noise,
    }


def best_chain(table, dataset: str, metric: str) -> str | None:
    """The chain learner with the best mean `metric` (the "a chain learner alone" of the goal)."""
    present = [m for m in CHAINS if table.get((dataset, m))]
    if not present:
        return None
    return max(present, key=lambda m: mean_and_std([v[metric] for v in table[(dataset, m)].values()])[0])


def goal_checks(table, datasets: list[str]) -> list[tuple[str, str, str, str, dict | None]]:
    """(goal, dataset, comparison, metric, gap) for every goal cell the rows allow."""
    checks = []
    for dataset in datasets:
        chain = best_chain(table, dataset, "P@1")
        if chain:
            checks.append(
                (
                    "a chain learner alone beats Omikuji's P@1",
                    dataset,
                    f"{chain} vs omikuji",
                    "P@1",
                    gap(table, dataset, chain, "omikuji", "P@1"),
                )
            )
        for peer in PEERS + REFERENCE_PEERS:
            for metric in RANKING:
                checks.append(
                    (
                        "the ensemble beats every peer on the ranking metrics",
                        dataset,
                        f"{ENSEMBLE} vs {peer}",
                        metric,
                        gap(table, dataset, ENSEMBLE, peer, metric),
                    )
                )
            for metric in ("example_f1", "micro_f1"):
                checks.append(
                    (
                        "the ensemble keeps the chains' lead in example and micro F1",
                        dataset,
                        f"{ENSEMBLE} vs {peer}",
                        metric,
                        gap(table, dataset, ENSEMBLE, peer, metric),
                    )
                )
        for metric in RANKING:
            checks.append(
                (
                    "combined beats the best fixed ordering (published claim)",
                    dataset,
                    "combined vs best_fixed",
                    metric,
                    gap(table, dataset, "combined", "best_fixed", metric),
                )
            )
        checks.append(
            (
                "every chain method is above the label-frequency floor",
                dataset,
                "best_fixed vs label_frequency",
                "P@1",
                gap(table, dataset, "best_fixed", "label_frequency", "P@1"),
            )
        )
    return [c for c in checks if c[4] is not None]


def _verdict(result: dict) -> str:
    sign = "holds" if result["holds"] else "fails"
    return (
        f"{sign}: {100 * result['mean']:+.2f} points ({100 * result['relative']:+.1f}%), "
        f"{result['wins']}/{result['seeds']} seeds, {result['noise']}"
    )


def render_markdown(results: dict) -> str:
    rows = results.get("rows", [])
    table = by_cell(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lines = [
        "# Strength: chains at a larger size vs tuned peers and the label-frequency floor",
        "",
        f"Command: `{results.get('command', '')}`",
        "",
        (
            "Test, ×100, mean ± sample std over seeds. Chain learners: set metrics from the best-validation "
            "example-F1 checkpoint, ranking metrics from the best-validation nDCG@5 checkpoint. Peers and the "
            "floor: hyper-parameters and set rule tuned on the same validation split. wall s: training and "
            "tuning (ensembles: their members'; best_fixed: without the k-fold selection runs)."
        ),
        "",
    ]
    if not rows:
        return "\n".join(lines + ["No cells finished yet.", ""])
    for dataset in datasets:
        lines += [
            f"## {dataset}",
            "",
            "| method | " + " | ".join(TABLE_METRICS) + " | wall s |",
            "|---" * (len(TABLE_METRICS) + 2) + "|",
        ]
        methods = sorted(
            {m for d, m in table if d == dataset},
            key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER),
        )
        for method in methods:
            seeds = table[(dataset, method)]
            cells = [percent_mean_std(*mean_and_std([v[m] for v in seeds.values()]), len(seeds)) for m in TABLE_METRICS]
            wall = mean_and_std([v["wall_time_s"] for v in seeds.values()])[0]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {wall:.0f} |")
        chosen = [r.get("chosen") for r in rows if r["dataset"] == dataset and r["method"] == "best_fixed"]
        lines += ["", f"best_fixed chosen per seed: {', '.join(map(str, chosen))}", *prior_lines(rows, dataset), ""]
    lines += [
        "## Goals, cell by cell",
        "",
        "| goal | dataset | comparison | metric | verdict |",
        "|---|---|---|---|---|",
    ]
    for goal, dataset, comparison, metric, result in goal_checks(table, datasets):
        if result is None:  # goal_checks drops these; for the type checker
            continue
        lines.append(f"| {goal} | {dataset} | {comparison} | {metric} | {_verdict(result)} |")
    skipped = results.get("skipped_peers") or [
        s for c in results.get("cells", {}).values() for s in c.get("skipped_peers", [])
    ]
    if skipped:
        lines += [
            "",
            "Skipped peers: "
            + "; ".join(f"{s['dataset']} seed {s['seed']} {s['peer']}: {s['reason']}" for s in skipped),
        ]
    lines += ["", *statistics_sections(results, rows)]
    return "\n".join(lines).rstrip("\n") + "\n"


def prior_lines(rows: list[dict], dataset: str) -> list[str]:
    """What the chain rows of `dataset` were trained on when not the plain chains (strength.py --prior
    and friends, recorded per row as "prior"), with each seed's validation-chosen rules of rearrange."""
    settings = {json.dumps(r["prior"], sort_keys=True) for r in rows if r["dataset"] == dataset and r.get("prior")}
    if not settings:
        return []
    said = "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(s).items()) for s in sorted(settings))
    rules = [
        f"seed {r['seed']}: {r['config']['rules']['ranking_rule']} / {r['config']['rules']['set_rule']}"
        for r in rows
        if r["dataset"] == dataset and r["method"] == "rearrange" and "rules" in r.get("config", {})
    ]
    return [
        "",
        f"Chain rows (learners, best_fixed, ensembles) on a peer's prior: {said}. Their sets and scores come "
        "from the ranking / set rules chosen on validation (rearrange: " + ("; ".join(rules) or "none recorded") + ").",
    ]


NAMED_PAIRS = (
    (ENSEMBLE, "ovr_logistic"),
    (ENSEMBLE, "omikuji"),
    ("combined", "best_fixed"),
    ("rearrange", "omikuji"),
    ("best_fixed", "label_frequency"),
)
STAT_METRICS = RANKING + ("example_f1", "micro_f1")


def statistics_sections(results: dict, rows: list[dict]) -> list[str]:
    """Across-datasets tests (experiments.reports.claim_stats) and per-dataset bootstrap intervals of the goals' pairs."""
    methods = [m for m in METHOD_ORDER if m not in ("freq2rare", "rare2freq", "fixed_random", "always_random")]
    return across_datasets_markdown(rows, RANKING, methods, NAMED_PAIRS, "cd_strength", PEERS) + bootstrap_markdown(
        results, NAMED_PAIRS, STAT_METRICS
    )

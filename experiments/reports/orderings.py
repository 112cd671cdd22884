"""orderings.md from orderings.json: mean ± std tables per dataset and claims computed from the rows.

Kept apart from compare_orderings.py so the report can be rebuilt (or re-read in a notebook) from a
results file alone: `render_markdown(load_results("experiments/results/orderings.json").payload())`
(experiments/grid/results_file.py reads every format of it).
Nothing here is written by hand: every "yes"/"no" and every percentage comes from the rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from labelchain.envs.metrics import HEADLINE
from labelchain.experiments.reports.claim_stats import BETTER_PEER, across_datasets_markdown, bootstrap_markdown
from labelchain.experiments.run.common import mean_and_std, percent_mean_std

CLAIM_METRICS = HEADLINE  # the headline five ranking metrics
TABLE_METRICS = HEADLINE + ("example_f1", "micro_f1", "macro_f1")  # every results table's columns
METHOD_ORDER = (
    "freq2rare",
    "rare2freq",
    "fixed_random",
    "always_random",
    "best_fixed",
    "rearrange",
    "reinforce",
    "ppo",
    "combined",
    "ensemble",
    "ovr_logistic",
    "omikuji",
    "ecc",
    "label_frequency",
)
# (method, strict, what the published work says about it vs the best fixed ordering)
CLAIMS = (
    ("rearrange", False, "Target rearrangement at least matches the best fixed ordering (on most of the five metrics)"),
    (
        "combined",
        True,
        "The combined objective beats the best fixed ordering (on all five metrics, all datasets, usually by 2-3%)",
    ),
    ("ensemble", True, "The ensemble (rearrange + combined) beats the best fixed ordering"),
    ("reinforce", True, "REINFORCE alone beats the best fixed ordering (not a published claim; for reference)"),
    ("ppo", True, "PPO alone beats the best fixed ordering (not a published claim; for reference)"),
)


@dataclass
class Summary:
    """One method on one dataset across seeds."""

    kind: str
    seeds: list[int]
    values: dict[str, list[float]]  # metric -> value per seed, in `seeds` order
    wall: list[float]

    def mean(self, metric: str) -> float:
        return mean_and_std(self.values[metric])[0]

    def std(self, metric: str) -> float:
        """Sample standard deviation (n - 1); 0 for one seed."""
        return mean_and_std(self.values[metric])[1]


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Summary]]:
    """{dataset: {method: Summary}} with seeds in increasing order."""
    table: dict[str, dict[str, Summary]] = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        summary = table.setdefault(row["dataset"], {}).setdefault(
            row["method"], Summary(row["kind"], [], {m: [] for m in TABLE_METRICS}, [])
        )
        summary.seeds.append(row["seed"])
        for metric in TABLE_METRICS:
            summary.values[metric].append(float(row["metrics"].get(metric, math.nan)))
        summary.wall.append(float(row.get("wall_time_s") or 0.0))
    return table


def mean_std(summary: Summary, metric: str) -> str:
    """×100, two decimals: '45.21 ± 0.35' (one seed: no ± part)."""
    return percent_mean_std(*mean_and_std(summary.values[metric]), len(summary.seeds))


def ordered_methods(methods: Iterable[str], order: Sequence[str] = METHOD_ORDER) -> list[str]:
    """Distinct `methods` in report order (fixed orders, dynamic learners, peers); unknown ones last, by name."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m))


def relative_percent(value: float, reference: float) -> float:
    return math.inf if reference == 0 else 100.0 * (value - reference) / reference


@dataclass
class Claim:
    """`method` vs best fixed on one dataset and metric: seed means and per-seed wins."""

    holds: bool
    method_mean: float
    best_fixed_mean: float
    relative: float  # percent, of the means
    seeds_holding: int
    seeds: int

    def cell(self) -> str:
        word = "yes" if self.holds else "**no**"
        return f"{word} {self.relative:+.1f}% ({self.seeds_holding}/{self.seeds})"


def compare(method: Summary, best_fixed: Summary, metric: str, strict: bool) -> Claim:
    """Seed means decide `holds`; per seed, the method meets that seed's own best fixed ordering."""
    beats = (lambda a, b: a > b) if strict else (lambda a, b: a >= b)
    paired = dict(zip(best_fixed.seeds, best_fixed.values[metric]))
    per_seed = [beats(v, paired[s]) for s, v in zip(method.seeds, method.values[metric]) if s in paired]
    m, b = method.mean(metric), best_fixed.mean(metric)
    return Claim(beats(m, b), m, b, relative_percent(m, b), sum(per_seed), len(per_seed))


def claim_table(table: dict[str, dict[str, Summary]], method: str, strict: bool) -> dict[str, dict[str, Claim]]:
    """{dataset: {metric: Claim}} for datasets where both `method` and best_fixed were run."""
    return {
        dataset: {metric: compare(methods[method], methods["best_fixed"], metric, strict) for metric in CLAIM_METRICS}
        for dataset, methods in table.items()
        if method in methods and "best_fixed" in methods
    }


def claims_markdown(table: dict[str, dict[str, Summary]]) -> list[str]:
    relation = {False: "≥", True: ">"}
    lines = [
        "## Claims (computed from the rows above)",
        "",
        "Each cell: does the method's seed mean meet the best fixed ordering's (chosen per seed on "
        "validation)? Then the relative difference of the means, (method − best fixed) / best fixed, "
        "and on how many seeds it holds against that seed's best fixed ordering.",
        "",
    ]
    for method, strict, statement in CLAIMS:
        claims = claim_table(table, method, strict)
        if not claims:
            continue
        lines += [
            f"### {method} {relation[strict]} best fixed",
            "",
            f"Claim: {statement}.",
            "",
            "| dataset | " + " | ".join(CLAIM_METRICS) + " | holds on |",
            "|---|" + "---|" * (len(CLAIM_METRICS) + 1),
        ]
        for dataset, cells in claims.items():
            n_held = sum(c.holds for c in cells.values())
            lines.append(
                f"| {dataset} | " + " | ".join(cells[m].cell() for m in CLAIM_METRICS) + f" | {n_held}/{len(cells)} |"
            )
        flat = [(d, m, c) for d, cells in claims.items() for m, c in cells.items()]
        held = [c for _, _, c in flat if c.holds]
        full = [d for d, cells in claims.items() if all(c.holds for c in cells.values())]
        most = [d for d, cells in claims.items() if sum(c.holds for c in cells.values()) * 2 > len(cells)]
        lines += [
            "",
            f"Holds in {len(held)} of {len(flat)} dataset × metric cells; on all five metrics for "
            f"{len(full)} of {len(claims)} datasets ({', '.join(full) or 'none'}); on most metrics "
            f"for {len(most)} of {len(claims)} ({', '.join(most) or 'none'}).",
        ]
        if held:
            gains = sorted(c.relative for c in held)
            lines.append(
                f"Where it holds, the relative margin is {gains[0]:+.1f}% to {gains[-1]:+.1f}% "
                f"(median {gains[len(gains) // 2]:+.1f}%); "
                f"{sum(2.0 <= g for g in gains)} of {len(gains)} margins are 2% or more."
            )
        failures = [
            f"{d} {m} ({100 * c.method_mean:.2f} vs {100 * c.best_fixed_mean:.2f}, {c.relative:+.1f}%)"
            for d, m, c in flat
            if not c.holds
        ]
        lines += ["Does not hold: " + "; ".join(failures) + "." if failures else "It holds in every cell.", ""]
    return lines


PEER_NAMES = ("ovr_logistic", "omikuji")
FLOOR = "label_frequency"
CHAIN_REFERENCE = "ensemble"
# the statistics sections (experiments.reports.claim_stats): the fixed orderings enter through best_fixed (the
# one a user would pick on validation), the floor stays out; the pairs are the claims above
RANKED_METHODS = ("best_fixed", "rearrange", "reinforce", "ppo", "combined", "ensemble") + PEER_NAMES
NAMED_PAIRS = tuple((method, "best_fixed") for method, _, _ in CLAIMS) + ((CHAIN_REFERENCE, BETTER_PEER),)
CD_FIGURE = "cd_orderings"


def peers_markdown(table: dict[str, dict[str, Summary]]) -> list[str]:
    """The chains' ensemble against the best tuned peer per metric, and the label-frequency floor.

    Points ×100 of the seed means: ensemble minus the better peer on that metric (its name in
    brackets); the floor's column is the best non-peer chain method's P@1 lead over ranking every
    document's labels by training frequency."""
    metrics = TABLE_METRICS
    lines = [
        "## Chains against the tuned peers and the floor",
        "",
        f"Points (×100) of the seed means: {CHAIN_REFERENCE} minus the better of {', '.join(PEER_NAMES)} on each "
        f"metric (which one in brackets); last column: the best chain method's P@1 minus {FLOOR}'s "
        "(every document ranked by training label frequency).",
        "",
        "| dataset | " + " | ".join(metrics) + f" | P@1 over {FLOOR} |",
        "|---|" + "---|" * (len(metrics) + 1),
    ]
    for dataset, methods in table.items():
        peers = [name for name in PEER_NAMES if name in methods]
        if CHAIN_REFERENCE not in methods or not peers:
            continue
        cells = []
        for metric in metrics:
            best = max(peers, key=lambda name: methods[name].mean(metric))
            gap = methods[CHAIN_REFERENCE].mean(metric) - methods[best].mean(metric)
            cells.append(f"{100 * gap:+.2f} ({best})")
        floor = "n/a"
        if FLOOR in methods:
            chains = [m for name, m in methods.items() if m.kind != "peer"]
            floor = f"{100 * (max(m.mean('P@1') for m in chains) - methods[FLOOR].mean('P@1')):+.2f}"
        lines.append(f"| {dataset} | " + " | ".join(cells) + f" | {floor} |")
    return lines + [""]


def dataset_markdown(
    dataset: str, methods: dict[str, Summary], rows: list[dict[str, Any]], cells: dict[str, Any]
) -> list[str]:
    seeds = sorted({s for summary in methods.values() for s in summary.seeds})
    lines = [f"## {dataset}", ""]
    data = next((c.get("data") for c in cells.values() if c["dataset"] == dataset and c.get("data")), None)
    if data:
        lines += [", ".join(f"{key} {value}" for key, value in data.items()), ""]
    dynamic_best = {
        metric: max((s.mean(metric) for name, s in methods.items() if s.kind != "peer"), default=None)
        for metric in TABLE_METRICS
    }
    lines += [
        "| method | kind | n | " + " | ".join(TABLE_METRICS) + " | wall s |",
        "|---|---|---|" + "---|" * (len(TABLE_METRICS) + 1),
    ]
    for name in ordered_methods(methods):
        summary = methods[name]
        cells_text = []
        for metric in TABLE_METRICS:
            text = mean_std(summary, metric)
            is_best = summary.kind != "peer" and summary.mean(metric) == dynamic_best[metric]
            cells_text.append(f"**{text}**" if is_best else text)
        wall = sum(summary.wall) / len(summary.wall)
        lines.append(
            f"| {name} | {summary.kind} | {len(summary.seeds)} | " + " | ".join(cells_text) + f" | {wall:.0f} |"
        )
    chosen = {row["seed"]: row["chosen"] for row in rows if row["dataset"] == dataset and row["method"] == "best_fixed"}
    if chosen:
        lines += [
            "",
            "Best fixed ordering (validation): "
            + ", ".join(f"seed {s}: {chosen[s]}" for s in seeds if s in chosen)
            + ".",
        ]
    return lines + [""]


def render_markdown(results: dict[str, Any]) -> str:
    """The whole orderings.md."""
    rows, cells = results.get("rows", []), results.get("cells", {})
    args = results.get("args", {})
    table = summarize(rows)
    lines = ["# Label orderings: fixed vs learned (test split)", "", f"Made by: `{results.get('command', '?')}`", ""]
    if args:
        lines += [
            "Values ×100, mean ± sample std over seeds (n = seeds); bold = best non-peer mean per column. "
            f"Every learner: {args.get('updates')} updates of batch {args.get('batch_size')}, hidden size "
            f"{args.get('hidden_size')}, lr {args.get('lr')} (reinforce, combined: {args.get('rl_lr') or args.get('lr')}; "
            f"ppo: {args.get('ppo_lr') or args.get('rl_lr') or args.get('lr')}, {args.get('ppo_epochs', 4)} epochs x "
            f"{args.get('ppo_minibatches', 4)} minibatches per rollout), the best-on-validation checkpoint by "
            f"{args.get('select_metric')} (validation every {args.get('eval_every')} updates, "
            f"{args.get('val_fraction')} of train held out). reinforce, ppo and combined start from the same "
            "run's rearrangement policy and train that many updates more. best_fixed: per seed, the fixed "
            "ordering with the best validation score. ensemble: rearrange + combined fused on validation "
            "(agents.ensemble); its wall time is its members' training. Peers (non-sequential references) "
            "train on the chains' training part; C / tree settings and set rule are tuned on the same "
            "validation split (experiments/peers.py). wall s: training + validation + test "
            "decoding per learner (RL learners exclude the rearrangement run they start from).",
            "",
        ]
    if not rows:
        lines += ["No cells finished yet.", ""]
    for dataset in table:
        lines += dataset_markdown(dataset, table[dataset], rows, cells)
    lines += claims_markdown(table)
    lines += peers_markdown(table)
    if rows:
        lines += across_datasets_markdown(rows, CLAIM_METRICS, RANKED_METHODS, NAMED_PAIRS, CD_FIGURE, PEER_NAMES)
        lines += bootstrap_markdown(results, NAMED_PAIRS, CLAIM_METRICS)
    skipped = results.get("skipped_peers", [])
    if skipped:
        lines += ["## Skipped peers", ""]
        reasons = sorted({(s["peer"], s["reason"]) for s in skipped})
        lines += [
            f"- {peer} ({', '.join(sorted({s['dataset'] for s in skipped if s['peer'] == peer}))}): {reason}"
            for peer, reason in reasons
        ] + [""]
    notes = results.get("notes", [])
    if notes:  # provenance the rows cannot carry (where and with which code a slice of the grid ran)
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    commands = sorted(
        {cell.get("command") for cell in cells.values() if cell.get("command")} - {results.get("command")}
    )
    if commands:
        lines += ["Some cells were made by earlier invocations: " + "; ".join(f"`{c}`" for c in commands), ""]
    peer_commands = sorted({cell["peers_command"] for cell in cells.values() if cell.get("peers_command")})
    if peer_commands:
        lines += ["Peer rows scored again (chain rows kept) by: " + "; ".join(f"`{c}`" for c in peer_commands), ""]
    added: dict[str, set[str]] = {}
    for cell in cells.values():
        for peer, command in cell.get("added_peers_commands", {}).items():
            added.setdefault(command, set()).add(peer)
    if added:
        lines += [
            "Peer rows added (other rows kept) by: "
            + "; ".join(f"`{c}` ({', '.join(sorted(added[c]))})" for c in sorted(added)),
            "",
        ]
    return "\n".join(lines)

"""Where the ensemble of classifier chains (peer "ecc") beats the chains' ensemble, from orderings.json.

    python experiments/ecc_report.py            # prints a Markdown table (docs/prior.md quotes it)
    python experiments/ecc_report.py --results other/orderings.json --peer omikuji

Per dataset with ECC rows and metric: points ×100 of the seed means, ecc minus the chains'
ensemble (rearrange + combined), with the seeds on which ECC is ahead of that seed's ensemble
(paired by seed); a ✓ marks a mean also above both tuned peers (ovr_logistic, omikuji). Subset
accuracy is read from the rows (orderings.md does not show it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labelchain.experiments.reports.orderings import TABLE_METRICS
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.folder import run_script
from labelchain.experiments.run.threads import Threads

METRICS = (*TABLE_METRICS, "subset_accuracy")
RESULTS = Path(__file__).resolve().parent / "results" / "orderings.json"


def per_seed(rows: list[dict], dataset: str, method: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r["metrics"][metric] for r in rows if (r["dataset"], r["method"]) == (dataset, method)}


def markdown(results: dict, peer: str = "ecc", chains: str = "ensemble") -> str:
    rows = results["rows"]
    datasets = sorted({r["dataset"] for r in rows if r["method"] == peer})
    lines = ["| dataset | n | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for dataset in datasets:
        cells = []
        for metric in METRICS:
            ecc, ens = per_seed(rows, dataset, peer, metric), per_seed(rows, dataset, chains, metric)
            seeds = sorted(set(ecc) & set(ens))
            mean = lambda values: sum(values) / len(values)  # noqa: E731
            gap = mean([ecc[s] for s in seeds]) - mean([ens[s] for s in seeds])
            ahead = sum(ecc[s] > ens[s] for s in seeds)
            peers = [mean(list(per_seed(rows, dataset, p, metric).values())) for p in ("ovr_logistic", "omikuji")]
            mark = " ✓" if mean([ecc[s] for s in seeds]) > max(peers) else ""
            cells.append(f"{100 * gap:+.2f} ({ahead}/{len(seeds)}){mark}")
        lines.append(f"| {dataset} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Args(Threads):
    """Print where the ensemble of classifier chains beats the chains' ensemble (a Markdown table)."""

    results: str = field(default=str(RESULTS), metadata={"help": "an orderings results file (orderings.json)"})
    peer: str = field(default="ecc", metadata={"help": "the peer method compared"})
    chains: str = field(default="ensemble", metadata={"help": "the chains' method it is compared with"})


def main(args: Args) -> str:
    """The table for `args` (printed by the script); --threads is accepted like every script's (no torch here)."""
    from labelchain.experiments.grid.results_file import load_results

    table = markdown(load_results(Path(args.results), "orderings").payload(), peer=args.peer, chains=args.chains)
    print(table)
    return table


if __name__ == "__main__":
    run_script(lambda: main(parse_args(Args)))

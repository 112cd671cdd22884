"""Where the ensemble of classifier chains (peer "ecc") beats the chains' ensemble, from orderings.json.

    python experiments/ecc_report.py            # prints a Markdown table (docs/prior.md quotes it)

Per dataset with ECC rows and metric: points ×100 of the seed means, ecc minus the chains'
ensemble (rearrange + combined), with the seeds on which ECC is ahead of that seed's ensemble
(paired by seed); a ✓ marks a mean also above both tuned peers (ovr_logistic, omikuji). Subset
accuracy is read from the rows (orderings.md does not show it).
"""

from __future__ import annotations

import json
from pathlib import Path

from labelchain.experiments.reports.orderings import TABLE_METRICS

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


if __name__ == "__main__":
    print(markdown(json.loads(RESULTS.read_text())))

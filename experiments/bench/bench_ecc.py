"""What the ensemble-of-classifier-chains peer costs beside one-vs-rest, per chain, on one dataset.

    python experiments/bench/bench_ecc.py --datasets bibtex delicious --chains 1

Side by side on the chains' training part (train minus the seeded validation slice), one thread,
one C: one-vs-rest logistic regression (agents.peers.OvRLogistic) and `--chains` classifier chains
(agents.classifier_chains.EnsembleOfChains, the chain-count rule switched off), fit and test
scoring timed. The ratio chain / OvR is the cost of one chain in OvR units; the projected tuning cost
of the ECC peer is then grid size x chain_count(L) x one chain's fit (printed, not run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.agents.classifier_chains import EnsembleOfChains, chain_count
from labelchain.agents.peers import DEFAULT_GRIDS, OvRLogistic
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments.run.common import Renames, atomic_write_json, parse_args


@dataclass
class Args(Threads):
    """Time one-vs-rest against `--chains` classifier chains at one C, per dataset."""

    RENAMED: ClassVar[Renames] = {"out": "out_file"}  # issue 20: --out-dir is a folder, --out-file one file

    datasets: list[str] = field(default_factory=lambda: ["bibtex"])
    chains: int = 1
    C: float = 1.0
    seed: int = 0
    out_file: str | None = field(default=None, metadata={"help": "also write the numbers as JSON here"})


def timed(model, train, test) -> tuple[float, float, dict]:
    started = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    scores = model.scores(test.X)
    return fitted - started, time.perf_counter() - fitted, evaluate(test.Y, scores=scores)


def main(args: Args) -> list[dict]:
    set_threads(args.threads or 1)
    rows = []
    for name in args.datasets:
        ds = load_dataset(name)
        train, _ = carve_validation(ds.train, 0.1, args.seed)
        ovr_fit, ovr_score, ovr_metrics = timed(OvRLogistic(C=args.C, seed=args.seed), train, ds.test)
        ecc = EnsembleOfChains(C=args.C, n_chains=args.chains, seed=args.seed, chain_budget=10**12)  # exactly --chains
        ecc_fit, ecc_score, ecc_metrics = timed(ecc, train, ds.test)
        per_chain = ecc_fit / args.chains
        chains = chain_count(ds.n_labels)
        row = {
            "dataset": name,
            "n_labels": ds.n_labels,
            "n_train": len(train),
            "C": args.C,
            "ovr_fit_s": ovr_fit,
            "ovr_score_s": ovr_score,
            "chains_timed": args.chains,
            "chain_fit_s": per_chain,
            "chain_score_s": ecc_score / args.chains,
            "chain_over_ovr_fit": per_chain / ovr_fit,
            "default_chains": chains,
            "projected_tune_s": len(DEFAULT_GRIDS["ecc"]) * chains * per_chain,
            "ovr_P@1": ovr_metrics["P@1"],
            "chains_P@1": ecc_metrics["P@1"],
        }
        rows.append(row)
        print(
            f"{name} (L={ds.n_labels}, {len(train)} docs, C={args.C}): OvR fit {ovr_fit:.1f} s, score "
            f"{ovr_score:.1f} s; one chain fit {per_chain:.1f} s ({per_chain / ovr_fit:.2f}x OvR), score "
            f"{ecc_score / args.chains:.1f} s; ECC default {chains} chains x {len(DEFAULT_GRIDS['ecc'])} C values: "
            f"about {row['projected_tune_s'] / 60:.0f} min to tune (OvR: {len(DEFAULT_GRIDS['ecc']) * ovr_fit / 60:.1f} min)",
            flush=True,
        )
    if args.out_file:
        atomic_write_json(args.out_file, {"args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main(parse_args(Args))

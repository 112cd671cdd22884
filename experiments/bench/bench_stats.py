"""Paired bootstrap speed: envs.stats (resample-weight products) vs recomputing `evaluate` per resample.

    python experiments/bench/bench_stats.py                      # 3,000 documents x 983 labels, 3 seeds
    python experiments/bench/bench_stats.py --docs 3000 --labels 983 --resamples 1000

Synthetic predictions of delicious' size (the largest test split of the nine datasets): gold density
2%, top-20 label ids and predicted sets for two methods. The baseline draws the same number of
documents per resample and calls envs.metrics.evaluate on each resampled copy (what a loop would do);
it runs --baseline-resamples resamples and is scaled to --resamples (most of its time is re-ranking the
full scores, which saved top-K ids avoid; the ratio is against that loop). Prints seconds and the ratio,
then one JSON line. One thread.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from labelchain.envs.metric_core import top_k_ranked
from labelchain.envs.metrics import evaluate
from labelchain.envs.stats import MethodPredictions, paired_bootstrap
from labelchain.experiments.run.common import Renames, parse_args
from labelchain.experiments.run.threads import Threads, set_threads


@dataclass
class Args(Threads):
    """Paired bootstrap speed (1 thread): vectorised envs.stats vs a per-resample evaluate loop."""

    # issue 20: counts are n_* (as --n-features); --seeds is a list of seeds in every other script
    RENAMED: ClassVar[Renames] = {"docs": "n_docs", "labels": "n_labels", "seeds": "n_seeds"}

    n_docs: int = 3000
    n_labels: int = 983
    n_seeds: int = 3
    resamples: int = 1000
    baseline_resamples: int = 30
    seed: int = 0


def case(args: Args) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    gold = sp.random(args.n_docs, args.n_labels, density=0.02, random_state=args.seed, format="csr")
    gold.data[:] = 1
    dense = gold.toarray()
    sa = rng.random(dense.shape) + 0.5 * dense
    sb = rng.random(dense.shape) + 0.45 * dense
    return gold, sa, sb, (sa > 1.2).astype(np.int8), (sb > 1.2).astype(np.int8)


def main(args: Args) -> dict:
    set_threads(args.threads or 1)  # benchmarks default to one thread (experiments.run.threads)
    gold, sa, sb, pa, pb = case(args)
    strata = np.repeat(np.arange(args.n_seeds), -(-args.n_docs // args.n_seeds))[: args.n_docs]
    a = MethodPredictions(top_k_ranked(sa, 20), sp.csr_matrix(pa))
    b = MethodPredictions(top_k_ranked(sb, 20), sp.csr_matrix(pb))
    started = time.perf_counter()
    out = paired_bootstrap(gold, a, b, strata, resamples=args.resamples, seed=args.seed)
    vectorised = time.perf_counter() - started

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for _ in range(args.baseline_resamples):
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(strata == s), (strata == s).sum()) for s in range(args.n_seeds)]
        )
        evaluate(gold[idx], sa[idx], pa[idx])
        evaluate(gold[idx], sb[idx], pb[idx])
    loop = (time.perf_counter() - started) * args.resamples / args.baseline_resamples
    result = {
        "docs": args.n_docs,
        "labels": args.n_labels,
        "metrics": len(out),
        "resamples": args.resamples,
        "vectorised_s": round(vectorised, 3),
        "evaluate_loop_s_scaled": round(loop, 1),
        "speedup": round(loop / vectorised, 1),
    }
    print(f"{len(out)} metrics, {args.resamples} resamples of {args.n_docs} documents x {args.n_labels} labels:")
    print(f"  envs.stats.paired_bootstrap  {vectorised:8.2f} s")
    print(f"  evaluate per resample        {loop:8.2f} s  (from {args.baseline_resamples} resamples, scaled)")
    print(f"  ratio                        {loop / vectorised:8.1f} x")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args(Args))

"""Score the non-sequential peers (agents.peers) on one dataset, tuned like the chains.

    python experiments/peers.py --dataset bibtex --peers ovr_logistic omikuji label_frequency

Each peer trains on the chains' training part (train minus the seeded validation slice that
experiments/train_rl.py carves with the same --val-fraction and --seed), picks its hyper-parameters
(OvR: C; Omikuji: tree count and cluster arity) by validation nDCG@5 and its set rule (threshold or
top-k, agents.set_rules) by validation example F1, then is scored on the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from labelchain.agents.peers import PEERS, PeerUnavailable, TunedPeer, tune_peer
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import HEADLINE, evaluate
from labelchain.experiments.run.common import atomic_write_json, parse_args, single_thread


def run_peer(name: str, ds: Dataset, seed: int = 0, val_fraction: float = 0.1) -> tuple[dict, TunedPeer]:
    """(test metrics + timings + chosen settings, the tuned peer). Raises PeerUnavailable."""
    train, val = carve_validation(ds.train, val_fraction, seed)
    tuned = tune_peer(name, train, val, seed=seed)
    started = time.perf_counter()
    Y_pred, scores = tuned.predict(ds.test.X)
    predict_seconds = time.perf_counter() - started
    result = evaluate(ds.test.Y, scores=scores, Y_pred=Y_pred, label_freq=ds.label_freq)
    result.update(
        wall_time_s=tuned.timings["tune_time_s"] + predict_seconds, predict_time_s=predict_seconds, **tuned.timings
    )
    return result, tuned


def tuned_config(tuned: TunedPeer, val_fraction: float) -> dict:
    """What a results row records about how the peer was chosen."""
    return {
        "peer": tuned.name,
        "hyper": tuned.hyper,
        "set_rule": tuned.set_rule.to_dict(),
        "search": tuned.search,
        "train_split": f"train minus the {val_fraction:.0%} validation slice (same as the chains)",
    }


@dataclass
class Args:
    """Score the non-sequential peers on one dataset's test split (one thread), tuned on validation."""

    dataset: str = "bibtex"
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    seed: int = 0
    val_fraction: float = 0.1
    out: str | None = field(default=None, metadata={"help": "also write the table as JSON here"})


TABLE_COLUMNS = HEADLINE + ("example_f1", "micro_f1", "tune_time_s", "wall_time_s")


def main(args: Args) -> dict[str, dict]:
    single_thread()
    unknown = [name for name in args.peers if name not in PEERS]
    if unknown:
        raise SystemExit(f"--peers: unknown {unknown}; choose from {list(PEERS)}")
    ds = load_dataset(args.dataset)
    print(f"{args.dataset}: {len(ds.train)} train / {len(ds.test)} test, {ds.n_labels} labels")
    results: dict[str, dict] = {}
    for name in args.peers:
        try:
            metrics, tuned = run_peer(name, ds, args.seed, args.val_fraction)
        except PeerUnavailable as note:
            print(f"skipping {name}: {note}")
            continue
        results[name] = {**metrics, "config": tuned_config(tuned, args.val_fraction)}
        print(f"{name}: chose {tuned.hyper or 'no hyper-parameters'}, set rule {tuned.set_rule.to_dict()}")
    print(f"{'peer':<16}" + "".join(f"{c:>12}" for c in TABLE_COLUMNS))
    for name, metrics in results.items():
        cells = "".join(f"{metrics[c]:>12.4f}" if c in metrics else f"{'-':>12}" for c in TABLE_COLUMNS)
        print(f"{name:<16}{cells}")
    if args.out:
        atomic_write_json(args.out, {"dataset": args.dataset, "seed": args.seed, "results": results})
    return results


if __name__ == "__main__":
    main(parse_args(Args))

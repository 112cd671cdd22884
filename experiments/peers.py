"""Score the non-sequential peers (agents.peers) on one dataset, tuned like the chains.

    python experiments/peers.py --dataset bibtex --peers ovr_logistic omikuji label_frequency

Each peer trains on the chains' training part (train minus the seeded validation slice that
experiments/train_rl.py carves with the same --val-fraction and --seed), picks its hyper-parameters
(OvR: C; Omikuji: tree count and cluster arity) by validation nDCG@5 and its set rule (threshold or
top-k, agents.set_rules) by validation example F1, then is scored on the test split.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import ClassVar

from labelchain.agents.config import DEFAULTS as D
from labelchain.agents.peers import PEERS, PeerUnavailable, TunedPeer, tune_peer
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.data.fingerprint import content_hash
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import HEADLINE, evaluate
from labelchain.envs.predictions import DEFAULT_TOP_K, from_outputs, save_predictions
from labelchain.experiments.run.common import Renames, atomic_write_json, parse_args
from labelchain.experiments.run.threads import Threads, set_threads


def run_peer(
    name: str,
    ds: Dataset,
    seed: int = 0,
    val_fraction: float = 0.1,
    save_to: str | Path | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> tuple[dict, TunedPeer]:
    """(test metrics + timings + chosen settings, the tuned peer). Raises PeerUnavailable.

    `save_to`: also write the peer's test predictions there (envs.predictions), from which its
    metrics rebuild exactly."""
    train, val = carve_validation(ds.train, val_fraction, seed)
    tuned = tune_peer(name, train, val, seed=seed)
    started = time.perf_counter()
    Y_pred, scores = tuned.predict(ds.test.X)
    predict_seconds = time.perf_counter() - started
    result = evaluate(ds.test.Y, scores=scores, Y_pred=Y_pred, label_freq=ds.label_freq)
    if save_to is not None:
        pred = from_outputs(
            name,
            ds.test.Y,
            scores,
            Y_pred,
            dataset=ds.name,
            dataset_hash=content_hash(ds),
            seed=seed,
            label_freq=ds.label_freq,
            top_k=top_k,
            extra={"hyper": tuned.hyper},
        )
        save_predictions(save_to, pred)
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
class Args(Threads):
    """Score the non-sequential peers on one dataset's test split (one thread), tuned on validation."""

    RENAMED: ClassVar[Renames] = {"out": "out_file"}  # issue 20: --out-dir is a folder, --out-file one file

    dataset: str = "bibtex"
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    seed: int = 0
    val_fraction: float = D.run.val_fraction
    out_file: str | None = field(default=None, metadata={"help": "also write the table as JSON here"})
    predictions_dir: str | None = field(
        default=None, metadata={"help": "also write each peer's test predictions here, as <peer>.npz"}
    )


TABLE_COLUMNS = HEADLINE + ("example_f1", "micro_f1", "tune_time_s", "wall_time_s")


def main(args: Args) -> dict[str, dict]:
    set_threads(args.threads)
    unknown = [name for name in args.peers if name not in PEERS]
    if unknown:
        raise SystemExit(f"--peers: unknown {unknown}; choose from {list(PEERS)}")
    ds = load_dataset(args.dataset)
    print(f"{args.dataset}: {len(ds.train)} train / {len(ds.test)} test, {ds.n_labels} labels")
    results: dict[str, dict] = {}
    for name in args.peers:
        try:
            save_to = None if args.predictions_dir is None else Path(args.predictions_dir) / f"{name}.npz"
            metrics, tuned = run_peer(name, ds, args.seed, args.val_fraction, save_to)
        except PeerUnavailable as note:
            print(f"skipping {name}: {note}")
            continue
        results[name] = {**metrics, "config": tuned_config(tuned, args.val_fraction)}
        print(f"{name}: chose {tuned.hyper or 'no hyper-parameters'}, set rule {tuned.set_rule.to_dict()}")
    print(f"{'peer':<16}" + "".join(f"{c:>12}" for c in TABLE_COLUMNS))
    for name, metrics in results.items():
        cells = "".join(f"{metrics[c]:>12.4f}" if c in metrics else f"{'-':>12}" for c in TABLE_COLUMNS)
        print(f"{name:<16}{cells}")
    if args.out_file:
        atomic_write_json(args.out_file, {"dataset": args.dataset, "seed": args.seed, "results": results})
    return results


if __name__ == "__main__":
    main(parse_args(Args))

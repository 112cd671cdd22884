"""Documents per second of the supervised learners and of test-time decoding, one thread.

    python experiments/bench_supervised.py --dataset bibtex

Rows: one epoch of teacher forcing (freq2rare order); one epoch of target rearrangement from a
fresh policy (cold: untrained chains run to the step cap) and after that teacher-forcing epoch
(warm: chains near their real length); greedy and beam decoding of the test split (`predict`,
which also produces the ranking scores). No validation inside the timed epochs. Prints a table,
then one JSON line with every figure.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
from experiments.common import parse_args, single_thread

from agents.decoding import predict
from agents.policy import ChainPolicy
from agents.training import TrainConfig, train_epochs
from envs.data.loading import load_dataset


@dataclass
class Args:
    """Benchmark supervised training and decoding of the chain policy (documents per second)."""

    dataset: str = "bibtex"
    batch_size: int = 64
    hidden_size: int = 256
    label_embed_size: int = 64
    decode_batch_size: int = 512
    beam_width: int = 5
    seed: int = 0


def _fresh_policy(dataset, args: Args) -> ChainPolicy:
    torch.manual_seed(args.seed)
    policy = ChainPolicy(
        dataset.n_features, dataset.n_labels, hidden_size=args.hidden_size, label_embed_size=args.label_embed_size
    )
    return policy.fit_input_normalization(dataset.train.X)


def _train_rate(policy: ChainPolicy, dataset, args: Args, ordering: str) -> float:
    config = TrainConfig(epochs=1, batch_size=args.batch_size, seed=args.seed, val_fraction=0.0)
    history = train_epochs(policy, dataset.train, config, learner=ordering, progress=False)
    return history.epochs[0]["docs_per_sec"]


def _decode_rate(policy: ChainPolicy, dataset, args: Args, method: str) -> float:
    started = time.perf_counter()
    predict(
        policy,
        dataset.test.X,
        batch_size=args.decode_batch_size,
        max_steps=dataset.max_labels_per_doc + 1,
        method=method,
        beam_width=args.beam_width,
    )
    return len(dataset.test) / (time.perf_counter() - started)


def main(args: Args) -> dict:
    single_thread()
    dataset = load_dataset(args.dataset)
    print(
        f"{args.dataset}: {len(dataset.train)} train / {len(dataset.test)} test docs, {dataset.n_labels} labels, "
        f"{dataset.n_features} features, hidden {args.hidden_size}, batch {args.batch_size}"
    )
    rows = [("rearrangement (cold)", _train_rate(_fresh_policy(dataset, args), dataset, args, "rearrange"))]
    policy = _fresh_policy(dataset, args)
    rows.append(("teacher forcing", _train_rate(policy, dataset, args, "freq2rare")))
    trained = {k: v.clone() for k, v in policy.state_dict().items()}
    rows.append(("rearrangement (warm)", _train_rate(policy, dataset, args, "rearrange")))
    policy.load_state_dict(trained)
    rows.append(("greedy decode (test)", _decode_rate(policy, dataset, args, "greedy")))
    rows.append((f"beam-{args.beam_width} decode (test)", _decode_rate(policy, dataset, args, "beam")))
    print(f"{'phase':<24} {'docs/s':>10}")
    for name, rate in rows:
        print(f"{name:<24} {rate:>10,.0f}")
    result = {
        "dataset": args.dataset,
        "threads": torch.get_num_threads(),
        "docs_per_sec": {name: round(rate, 1) for name, rate in rows},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args(Args))

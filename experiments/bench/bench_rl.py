"""Training throughput of the policy-gradient learners (one thread): label-steps/s and documents/s.

    python experiments/bench/bench_rl.py --datasets bibtex delicious --learners reinforce ppo

Each configuration first runs `warmup` updates, then updates on random minibatches of training
documents for `seconds` of wall time. A label-step is one action of one sampled episode (STOP
included), the env's `charts/label_steps`; PPO's figure counts each rollout step once, not once per
epoch. The policy has the library's default size unless told otherwise. Prints a table, then one
JSON line with every figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from labelchain.agents.config import DEFAULTS as D, Config
from labelchain.experiments.run.common import parse_args, resolve_device
from labelchain.experiments.run.threads import Threads, set_threads

from labelchain.agents.learners import make_learner
from labelchain.agents.policy_factory import build_policy
from labelchain.envs.data.loading import load_dataset


@dataclass
class Args(Threads):
    """Benchmark RL training throughput (label-steps and documents per second, one thread)."""

    datasets: list[str] = field(default_factory=lambda: ["bibtex", "delicious"])
    learners: list[str] = field(default_factory=lambda: ["reinforce"])
    batch_size: int = D.learner.batch_size
    hidden_size: int = 256
    seconds: float = field(default=10.0, metadata={"help": "wall time per configuration"})
    warmup: int = 2
    seed: int = 0
    device: str = "auto"


def bench(dataset, learner_name: str, args: Args) -> dict[str, float]:
    torch.manual_seed(args.seed)
    config = Config.of(hidden_size=args.hidden_size, batch_size=args.batch_size, seed=args.seed)
    policy = build_policy(config.policy, dataset.train).to(resolve_device(args.device))
    learner = make_learner(
        learner_name,
        policy,
        dataset.train,
        config.learner_config(learner_name),  # the default rates (agents.config), as before
    )
    rng = np.random.default_rng(args.seed)
    n = len(dataset.train)

    def batch() -> np.ndarray:
        return np.sort(rng.choice(n, min(args.batch_size, n), replace=False))

    for _ in range(args.warmup):
        learner.update(batch())
    steps = 0.0  # label steps, summed from the learner's float scalars
    docs = updates = 0
    returns = []
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        rows = batch()
        scalars = learner.update(rows)
        steps += scalars["charts/label_steps"]
        docs += len(rows)
        updates += 1
        returns.append(scalars["charts/episodic_return"])
    elapsed = time.perf_counter() - started
    return {
        "dataset": dataset.name,
        "learner": learner_name,
        "labels": dataset.n_labels,
        "updates": updates,
        "label_steps_per_sec": steps / elapsed,
        "docs_per_sec": docs / elapsed,
        "steps_per_doc": steps / max(docs, 1),
        "mean_episodic_return": float(np.mean(returns)) if returns else float("nan"),
    }


def main(args: Args) -> list[dict]:
    set_threads(args.threads or 1)
    rows = []
    header = f"{'dataset':10s} {'learner':10s} {'L':>5s} {'updates':>7s} {'label-steps/s':>14s} {'docs/s':>8s} {'steps/doc':>9s}"
    print(header)
    for name in args.datasets:
        dataset = load_dataset(name)
        for learner in args.learners:
            r = bench(dataset, learner, args)
            rows.append(r)
            print(
                f"{r['dataset']:10s} {r['learner']:10s} {r['labels']:5d} {r['updates']:7d} "
                f"{r['label_steps_per_sec']:14.0f} {r['docs_per_sec']:8.1f} {r['steps_per_doc']:9.2f}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "benchmark": "rl_training_throughput",
                "threads": torch.get_num_threads(),
                "batch_size": args.batch_size,
                "hidden_size": args.hidden_size,
                "results": rows,
            }
        )
    )
    return rows


if __name__ == "__main__":
    main(parse_args(Args))

"""Cost of the policy's output layer alone: flat vs tree-factored (vs tree with sparse label gradients).

    python experiments/bench/bench_output_layer.py --labels 1000 100000

A micro-benchmark of agents.output_layers on **random** data (not a learnable task, not a quality
measure): random sparse documents, random label chains of `chain_length` labels + STOP as teacher-
forcing targets, and a label tree built from random sparse label embeddings (balanced spherical
k-means, `branching`, `leaf_size`). For each number of labels and each layer it measures, one thread:
teacher-forcing steps (forward, backward, gradient clipping, optimiser step, as the learners take
them) and greedy decoding with STOP suppressed for `decode_steps` steps (what `predict` does for
ranking scores), both in documents per second over `seconds` of wall time, and the tree's build time.
The scale benchmark on synthetic learnable label spaces (environment, Omikuji, quality) is the
other half of issue 8. Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.config import DEFAULTS as D
from labelchain.agents.decoding import greedy_decode
from labelchain.agents.optim import clip_grad_norm, make_optimizer
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.envs.label_clusters import LabelTree, build_label_tree
from labelchain.experiments.run.common import Renames, parse_args
from labelchain.experiments.run.threads import Threads, set_threads

LAYERS = ("flat", "tree", "tree+sparse")


@dataclass
class Args(Threads):
    """Documents per second of teacher forcing and greedy decoding, flat vs tree output layer."""

    RENAMED: ClassVar[Renames] = {  # before issue 20's one flag vocabulary (train_rl's names)
        "features": "n_features",
        "branching": "tree_branching",
        "leaf_size": "tree_leaf_size",
        "beam": "tree_beam",
        "query_size": "tree_query_size",
    }

    labels: list[int] = field(default_factory=lambda: [1000, 100_000], metadata={"help": "label space sizes"})
    layers: list[str] = field(default_factory=lambda: list(LAYERS), metadata={"help": f"from {LAYERS}"})
    n_features: int = 2000
    batch_size: int = D.learner.batch_size
    hidden_size: int = 256
    chain_length: int = 5
    decode_steps: int = 5
    tree_branching: int = D.policy.tree_branching
    tree_leaf_size: int = D.policy.tree_leaf_size
    tree_beam: int = D.policy.tree_beam
    tree_query_size: int | None = D.policy.tree_query_size
    seconds: float = 5.0
    seed: int = 0


def _random_tree(n_labels: int, args: Args) -> tuple[LabelTree, float]:
    embeddings = sp.random(n_labels, 64, density=0.2, format="csr", random_state=args.seed, dtype=np.float32)
    started = time.perf_counter()
    tree = build_label_tree(embeddings, args.tree_branching, args.tree_leaf_size, seed=args.seed)
    return tree, time.perf_counter() - started


def _rate(work, batch: int, seconds: float) -> float:
    """Documents per second of repeating `work` (one batch) for about `seconds` (after one warm-up)."""
    work()
    started, docs = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        work()
        docs += batch
    return docs / (time.perf_counter() - started)


def _measure(layer: str, n_labels: int, tree: LabelTree, args: Args) -> tuple[float, float]:
    rng = np.random.default_rng(args.seed)
    X = sp.random(
        args.batch_size, args.n_features, density=0.01, format="csr", random_state=args.seed, dtype=np.float32
    )
    targets = np.full((args.batch_size, args.chain_length + 1), n_labels)
    targets[:, :-1] = np.stack([rng.choice(n_labels, args.chain_length, replace=False) for _ in range(args.batch_size)])
    torch.manual_seed(args.seed)
    config = PolicyConfig(
        args.n_features,
        n_labels,
        hidden_size=args.hidden_size,
        output="flat" if layer == "flat" else "tree",
        tree=None if layer == "flat" else tree,
        tree_beam=args.tree_beam,
        sparse_label_grads=layer == "tree+sparse",
        tree_query_size=None if layer == "flat" else args.tree_query_size,
    )
    policy = build_policy(config, None)  # synthetic inputs: no training split to normalise on
    optimizer = make_optimizer(policy, 1e-3)

    def train_step() -> None:
        loss = teacher_forcing_loss(policy, X, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(policy.parameters(), 1.0)
        optimizer.step()

    @torch.no_grad()
    def decode() -> None:
        greedy_decode(policy, X, max_steps=2 * args.decode_steps, suppress_stop_steps=args.decode_steps)

    policy.train()
    train = _rate(train_step, args.batch_size, args.seconds)
    policy.eval()
    return train, _rate(decode, args.batch_size, args.seconds)


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    bad = sorted(set(args.layers) - set(LAYERS))
    if bad:
        raise SystemExit(f"error: --layers must be from {LAYERS}, got {bad}")
    rows = []
    for n_labels in args.labels:
        tree, build_seconds = _random_tree(n_labels, args)
        for layer in args.layers:
            train, decode = _measure(layer, n_labels, tree, args)
            rows.append(
                {
                    "labels": n_labels,
                    "layer": layer,
                    "train_docs_per_sec": round(train, 1),
                    "greedy_docs_per_sec": round(decode, 1),
                    "tree_build_seconds": None if layer == "flat" else round(build_seconds, 2),
                }
            )
    print(f"{'labels':>8} {'layer':<12} {'teacher forcing docs/s':>23} {'greedy docs/s':>14} {'tree build s':>13}")
    for row in rows:
        build = "" if row["tree_build_seconds"] is None else f"{row['tree_build_seconds']:.2f}"
        print(
            f"{row['labels']:>8,} {row['layer']:<12} {row['train_docs_per_sec']:>23,.0f} "
            f"{row['greedy_docs_per_sec']:>14,.0f} {build:>13}"
        )
    result = {
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "hidden_size": args.hidden_size,
        "tree_branching": args.tree_branching,
        "tree_leaf_size": args.tree_leaf_size,
        "tree_beam": args.tree_beam,
        "tree_query_size": args.tree_query_size,
        "rows": rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args(Args))

"""What every cell of the scale benchmark (bench_scale.py) shares: its flags, its synthetic data, peak
memory, and the top-k metrics the Omikuji and prior cells report.

Kept apart from bench_scale.py (which runs and records the cells) and scale_prior.py (the prior-chain
cell), so both read one definition of the flags and of P@1 / P@5 / PSP@5.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from labelchain.envs.data.synthetic import make_synthetic
from labelchain.experiments.run.common import Renames
from labelchain.experiments.run.threads import Threads

RANK_K = 5  # P@5 and PSP@5


@dataclass
class Args(Threads):
    """Scale benchmark of the label chain on synthetic label spaces (one thread, each cell its own process)."""

    RENAMED: ClassVar[Renames] = {"budget_updates": "updates", "decode_batch": "decode_batch_size"}  # issue 20

    labels: list[int] = field(default_factory=lambda: [1000, 10000, 100000])
    outputs: list[str] = field(default_factory=lambda: ["flat", "tree"])
    n_features: int = field(default=16384, metadata={"help": "the same at every L, so only L varies"})
    train_docs: int = 20000
    test_docs: int = 2000
    hidden_size: int = 256
    tree_branching: int = 16
    tree_leaf_size: int = 100
    tree_beam: int = 10
    sparse_label_grads: bool = field(
        default=True,
        metadata={"help": "tree cells: sparse gradients and lazy Adam for the label tables (agents.optim)"},
    )
    batch_size: int = 64
    updates: int = field(default=10, metadata={"help": "teacher-forcing updates per cell"})
    decode_docs: int = 200
    decode_batch_size: int = 256
    env_envs: int = 1024
    env_seconds: float = 3.0
    chains: bool = field(
        default=True, metadata={"help": "the --outputs chain cells (--no-chains: e.g. prior rows only)"}
    )
    omikuji: bool = True
    env: bool = True
    prior: bool = field(default=True, metadata={"help": "the prior-chain cell (Omikuji's scores as the prior)"})
    prior_shortlist: int = field(default=100, metadata={"help": "prior cell: shortlist M (and top-M stored)"})
    prior_folds: int = field(default=3, metadata={"help": "prior cell: out-of-fold folds over the training split"})
    prior_updates: int = field(default=300, metadata={"help": "prior cell: training updates of --batch-size"})
    prior_learner: str = field(default="rearrange", metadata={"help": "prior cell: the learner (agents.learners)"})
    prior_mode: str = field(default="shared", metadata={"help": "prior cell: 'shared' or 'per_label' (a, b)"})
    update: bool = field(
        default=False, metadata={"help": "replace only this run's cells in an existing results/scale.json"}
    )
    seed: int = 0
    jobs: int = field(
        default=1,
        metadata={"help": "cells run at once (rates are per CPU-second, so parallel cells do not distort them much)"},
    )
    write: bool = field(default=True, metadata={"help": "write results/scale.{json,md} and the plot"})
    cell: str | None = field(default=None, metadata={"help": "internal: run one 'L:kind' cell"})


def synthetic_data(args: Args, n_labels: int):
    return make_synthetic(
        n_labels, args.seed, n_train=args.train_docs, n_test=args.test_docs, n_features=args.n_features
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def first_label_precision(Y, first: np.ndarray) -> float:
    """P@1 of one predicted label per document (-1 = none): the share of documents where it is gold."""
    hit = np.zeros(len(first), dtype=bool)
    has = first >= 0
    hit[has] = np.asarray(Y[np.flatnonzero(has), first[has]]).ravel()
    return float(hit.mean())


def fill_ranked(ranked: list[list[int]], fallback: np.ndarray, k: int = RANK_K) -> np.ndarray:
    """(n, k) label ids: each row's ranked labels, then the `fallback` labels (training frequency order)
    it does not hold yet, so the metrics always read k distinct labels."""
    out = np.empty((len(ranked), k), dtype=np.int64)
    for row, labels in enumerate(ranked):
        head = list(dict.fromkeys(labels))[:k]
        extra = [label for label in fallback[: 2 * k].tolist() if label not in head]
        out[row] = (head + extra)[:k]
    return out


def ranked_metrics(train_Y, test_Y, ranked: np.ndarray) -> dict:
    """P@1, P@5 and PSP@5 (Jain et al.'s propensities from the training label counts) of rankings (n, 5)."""
    import scipy.sparse as sp

    from labelchain.envs.metric_core import gold_hits
    from labelchain.envs.tail_metrics import propensity, propensity_scores

    gold = sp.csr_matrix(test_Y, dtype=bool)
    gold.sort_indices()
    hits = gold_hits(gold, ranked)
    counts = np.asarray(sp.csr_matrix(train_Y).sum(axis=0)).ravel()
    inv_p = 1.0 / propensity(counts, train_Y.shape[0])
    return {
        "P@1": float(hits[:, 0].mean()),
        "P@5": float(hits[:, :RANK_K].sum(axis=1).mean() / RANK_K),
        "PSP@5": propensity_scores(gold, ranked, inv_p, RANK_K, normalized=False)[0],
    }


def frequency_order(Y) -> np.ndarray:
    """Label ids by descending training frequency (ties to the lower id)."""
    import scipy.sparse as sp

    counts = np.asarray(sp.csr_matrix(Y).sum(axis=0)).ravel()
    return np.argsort(-counts, kind="stable")


def omikuji_top(model, X, top_k: int, beam_size: int | None = None) -> list[list[int]]:
    """Each row's top `top_k` labels from an Omikuji model, one document at a time (beam: its default)."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    beam = {} if beam_size is None else {"beam_size": beam_size}
    ranked = []
    for row in range(X.shape[0]):
        lo, hi = X.indptr[row], X.indptr[row + 1]
        top = model.predict(list(zip(X.indices[lo:hi].tolist(), X.data[lo:hi].tolist())), top_k=top_k, **beam)
        ranked.append([label for label, _ in top])
    return ranked

"""The prior-chain cell of the scale benchmark (docs/prior-scale.md): Omikuji's out-of-fold scores as
the prior of a shortlisting flat chain, its ranking metrics and decoding rates beside the matcher's.

Kept apart from bench_scale.py, which runs every cell in its own process and records the results.
"""

from __future__ import annotations

import time

import numpy as np

from labelchain.experiments.bench.scale_common import (
    RANK_K,
    Args,
    fill_ranked,
    frequency_order,
    omikuji_top,
    peak_rss_mb,
    ranked_metrics,
    synthetic_data,
)


def chain_ranking(result, n_labels: int) -> list[list[int]]:
    """Each document's labels in emission order, then the others its first step gave probability to,
    by that probability (position scores, `agents.decoding`, without a dense (B, L) matrix)."""
    labels = result.labels.numpy()
    first = result.first_probs.coalesce() if result.first_probs.is_sparse else result.first_probs.to_sparse()
    index, values = first.indices().numpy(), first.values().numpy()
    order = np.lexsort((-values, index[0]))
    by_row = np.split(index[1][order], np.searchsorted(index[0][order], np.arange(1, labels.shape[0])))
    return [[int(x) for x in row if x >= 0] + by_row[i].tolist() for i, row in enumerate(labels)]


def prior_cell(n_labels: int, args: Args) -> dict:
    """The prior chain (see the module docstring): Omikuji's out-of-fold prior, a shortlisting flat chain."""
    import scipy.sparse as sp
    import torch

    from labelchain.agents import policy_factory
    from labelchain.agents.decoding import greedy_decode
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import make_learner
    from labelchain.agents.peers import OmikujiTree
    from labelchain.agents.policy_config import PolicyConfig
    from labelchain.agents.prior import build_prior, recall_at
    from labelchain.agents.prior_columns import prior_columns, with_prior_columns
    from labelchain.agents.supervised import carve_validation
    from labelchain.envs.data.dataset import Split
    from labelchain.envs.shortlist import shortlist_from_scores

    data = synthetic_data(args, n_labels)
    m = args.prior_shortlist
    started = time.process_time()
    omikuji = ({"n_trees": 1, "cluster_k": 2},)  # the Omikuji row's hyper-parameters
    prior = build_prior(
        "omikuji", data, seed=args.seed, folds=args.prior_folds, top_m_size=m, grid=omikuji
    )  # val_fraction 0.1: the chain trains on the other 90%
    prior_seconds = time.process_time() - started
    train, _ = carve_validation(data.train, 0.1, args.seed)
    shortlist = shortlist_from_scores(prior.train, m)
    train_Y = sp.csr_matrix(train.Y.multiply(shortlist), dtype=train.Y.dtype)  # the matcher's recall loss
    train = Split(with_prior_columns(train.X, prior_columns(prior.train, m)), train_Y)
    X_test = with_prior_columns(data.test.X, prior_columns(prior.test, m))
    # the matcher's own test-time cost: the same peer's top-M scoring of the test documents, timed
    matcher = OmikujiTree(n_trees=1, cluster_k=2, top_k=m, beam_size=max(m, 10)).fit(
        carve_validation(data.train, 0.1, args.seed)[0]
    )
    started = time.process_time()  # its scaling and top-M predictions, as `prior.test` was made
    omikuji_top(matcher.model, matcher.scaler.transform(data.test.X), m, max(m, 10))
    matcher_seconds = time.process_time() - started

    torch.manual_seed(args.seed)
    config = PolicyConfig(
        data.n_features, data.n_labels, hidden_size=args.hidden_size, prior=args.prior_mode, shortlist=True
    )
    policy = policy_factory.build_policy(config, None)
    learner = make_learner(
        args.prior_learner,
        policy,
        train,
        LearnerConfig(batch_size=args.batch_size, seed=args.seed, greedy_charts=False),
    )
    rng = np.random.default_rng(args.seed)

    def batch() -> np.ndarray:
        return np.sort(rng.choice(len(train), size=args.batch_size, replace=False))

    learner.update(batch())  # warm-up
    started = time.process_time()
    for _ in range(args.prior_updates):
        learner.update(batch())
    train_seconds = time.process_time() - started
    policy.eval()
    fallback = frequency_order(data.train.Y)
    ranked: list[list[int]] = []
    with torch.no_grad():
        started = time.process_time()
        for begin in range(0, X_test.shape[0], args.decode_batch_size):
            result = greedy_decode(policy, X_test[begin : begin + args.decode_batch_size], suppress_stop_steps=RANK_K)
            ranked += chain_ranking(result, n_labels)
        decode_seconds = time.process_time() - started
        n_dense = min(args.decode_docs, X_test.shape[0])
        started = time.process_time()
        for begin in range(0, n_dense, args.decode_batch_size):
            rows = X_test[begin : min(begin + args.decode_batch_size, n_dense)]
            greedy_decode(policy, rows, suppress_stop_steps=RANK_K, compact=False)
        dense_seconds = time.process_time() - started
    chain = ranked_metrics(data.train.Y, data.test.Y, fill_ranked(ranked, fallback))
    prior_rank = [
        prior.test.indices[lo:hi][np.argsort(-prior.test.data[lo:hi], kind="stable")].tolist()
        for lo, hi in zip(prior.test.indptr[:-1], prior.test.indptr[1:])
    ]
    alone = ranked_metrics(data.train.Y, data.test.Y, fill_ranked(prior_rank, fallback))
    n_test = X_test.shape[0]
    chain_rate, matcher_rate = n_test / decode_seconds, n_test / matcher_seconds
    return {
        **chain,
        "prior_alone_P@1": alone["P@1"],
        "prior_alone_P@5": alone["P@5"],
        "prior_alone_PSP@5": alone["PSP@5"],
        "recall_at_M": recall_at(prior.test, data.test.Y, m),
        "train_docs_per_s": args.prior_updates * args.batch_size / train_seconds,
        "decode_docs_per_s": chain_rate,
        "matcher_docs_per_s": matcher_rate,
        "pipeline_decode_docs_per_s": 1.0 / (1.0 / chain_rate + 1.0 / matcher_rate),
        "dense_decode_docs_per_s": n_dense / dense_seconds,
        "prior_build_s": prior_seconds,
        "shortlist": m,
        "folds": args.prior_folds,
        "updates": args.prior_updates,
        "learner": args.prior_learner,
        "prior_mode": args.prior_mode,
        "parameters": int(sum(p.numel() for p in policy.parameters())),
        "peak_rss_mb": peak_rss_mb(),
    }

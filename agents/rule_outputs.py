"""A trained chain's outputs on one split, in the form `agents.chain_rules` chooses rules from.

Why a module of its own: agents.chain_rules is numpy only (it is unit-tested on hand-made arrays);
this is the torch side that fills its `ChainOutputs` from decoding, in batches:
  * the greedy chain's sets at every STOP logit offset s (the policy's `stop_offset`, which adds s to
    STOP's logit at every step: `ChainPolicy.document_prior`);
  * the position scores and first-step probabilities of a greedy chain with STOP suppressed for
    `score_steps` labels (what `agents.decoding.predict` ranks by);
  * the share of `n_samples` sampled chains holding each label (plain shares: chain_rules breaks ties);
  * the prior: a prior policy's own prior (FLOOR + its prior columns), or scores the caller gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.chain_rules import ChainOutputs
from labelchain.agents.decoding import greedy_decode, marginal_scores
from labelchain.agents.label_scores import labels_to_csr, position_scores
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.prior_columns import FLOOR, split_prior_columns

DEFAULT_OFFSETS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DEFAULT_SAMPLES = 8


def decode_chain_outputs(
    policy: ChainPolicy,
    X,
    *,
    prior: np.ndarray | None = None,
    offsets: Sequence[float] = DEFAULT_OFFSETS,
    n_samples: int = DEFAULT_SAMPLES,
    score_steps: int = 5,
    max_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> ChainOutputs:
    """`ChainOutputs` of the rows of X (eval mode, no gradients; the policy's stop_offset is restored)."""
    if policy.output.kind != "flat" or policy.mcg is not None:
        raise ValueError(
            "chain rules need a flat output layer without MCG (STOP offsets, dense first-step probabilities)"
        )
    if prior is None:
        if policy.prior_mode == "none":
            raise ValueError("a policy without a prior needs the peer's scores as `prior`")
        prior = FLOOR + np.asarray(split_prior_columns(X, policy.n_features, policy.n_labels)[1], dtype=np.float64)
    offsets = sorted({0.0, *map(float, offsets)})
    generator = torch.Generator(device=policy.input_weight.device).manual_seed(seed)
    was_training, kept_offset = policy.training, policy.stop_offset
    policy.eval()
    sets: dict[float, list[sp.csr_matrix]] = {offset: [] for offset in offsets}
    emission, first, shares = [], [], []
    try:
        with torch.no_grad():
            for begin in range(0, X.shape[0], batch_size):
                rows = X[begin : begin + batch_size]
                for offset in offsets:
                    policy.stop_offset = kept_offset + offset
                    result = greedy_decode(policy, rows, max_steps=max_steps)
                    sets[offset].append(labels_to_csr(result.labels, policy.n_labels, result.set_lengths))
                policy.stop_offset = kept_offset
                ranked = greedy_decode(policy, rows, max_steps=max_steps, suppress_stop_steps=score_steps)
                emission.append(position_scores(ranked.labels, policy.n_labels, ranked.first_probs))
                probs = ranked.first_probs  # sparse COO from the O(M) shortlist step (agents.shortlist_step)
                first.append((probs.to_dense() if probs.is_sparse else probs).float().cpu().numpy())
                if n_samples > 0:
                    no_tiebreak = torch.zeros(rows.shape[0], policy.n_labels)
                    shares.append(
                        marginal_scores(
                            policy,
                            rows,
                            n_samples=n_samples,
                            max_steps=max_steps,
                            score_steps=score_steps,
                            generator=generator,
                            tiebreak=no_tiebreak,
                        )
                    )
    finally:
        policy.stop_offset = kept_offset
        policy.train(was_training)
    return ChainOutputs(
        {offset: sp.csr_matrix(sp.vstack(parts, format="csr")) for offset, parts in sets.items()},
        np.vstack(emission),
        np.vstack(first),
        prior,
        np.vstack(shares) if shares else None,
    )

"""The O(M) step of a shortlisting prior policy's flat output layer.

A prior policy with a shortlist (`PolicyConfig(prior=..., shortlist=True)`, agents.prior_columns) may
emit only the M labels its prior stores for a document, plus STOP: every other label's dense logit is
-inf (`ChainPolicy._with_prior`), so the softmax over L + 1 actions equals the softmax over those
M + 1. A step then needs only M + 1 scores per document: the flat layer's weight rows of the document's
shortlist, gathered ((B, M + 1, in) x (B, in) -> (B, M + 1), `agents.tree_ops.gathered_scores`), plus
the prior's offsets of those labels. Dense, a step costs O(L) scores; here O(M).

`ShortlistEmitted` is the compact tracker the decoders and teacher forcing use in place of the flat
layer's dense (B, L + 1) mask: column c < M of row b is label `ids[b, c]` (ascending ids, padded to
the batch's largest shortlist), the last column is STOP. The flat layer's `choose`, `candidates`,
`first_step_probs` and `sequence_log_probs` take it and answer in label ids, with the same numbers as
the dense path to float rounding (tests/test_shortlist_step.py). `shortlist_start` builds the chains'
start state without the dense per-document prior, so nothing in a decode is O(L) per document but the
returned first-step probabilities' sparse (B, L) tensor.

Chosen automatically (`compact_applies`) for a flat, unconstrained prior policy with a shortlist fed
scipy/numpy feature rows; the policy's public faces (`step`, `sequence_logits`, `prefix_logits`) stay
dense. Sampling draws from the same distribution as the dense path, but not the same draws (the noise
is drawn over M + 1 columns, not L + 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.chain_step import ShortlistEmitted
from labelchain.agents.prior_columns import FLOOR, prior_entries

if TYPE_CHECKING:
    from labelchain.agents.policy import ChainPolicy, ChainState


def compact_applies(policy: ChainPolicy, X) -> bool:
    """Whether the O(M) step covers this policy and these feature rows: a shortlisting prior policy
    with an unconstrained flat layer, rows as scipy / numpy (a tensor, e.g. SB3's, stays dense)."""
    return (
        policy.prior_mode != "none"
        and bool(policy.shortlist)
        and policy.output.kind == "flat"
        and getattr(policy.output, "constraint", None) is None
        and (sp.issparse(X) or isinstance(X, np.ndarray))
    )


def document_shortlist(policy: ChainPolicy, X) -> ShortlistEmitted:
    """The compact tracker of feature rows X: each row's shortlisted labels (its prior columns > 0),
    their offsets a * prior + b exactly as `ChainPolicy.document_prior` computes them, nothing emitted."""
    L, device = policy.n_labels, policy.input_weight.device
    columns = prior_entries(X, policy.n_features, L)
    counts = np.diff(columns.indptr)
    width = int(counts.max()) if counts.size else 0
    rows = np.repeat(np.arange(columns.shape[0]), counts)
    slots = np.arange(columns.nnz) - columns.indptr[rows]
    ids = np.full((columns.shape[0], width + 1), L, dtype=np.int64)
    values = np.zeros((columns.shape[0], width), dtype=np.float32)
    ids[rows, slots], values[rows, slots] = columns.indices, columns.data
    ids_t = torch.as_tensor(ids, device=device)
    values_t = torch.as_tensor(values, device=device)
    labels = ids_t[:, :-1]
    valid = labels != L
    scale, offset = policy.prior_weights()  # the dense step's a and b (agents.policy.PRIOR_GAIN)
    if policy.prior_mode == "per_label":
        safe = labels.clamp(max=L - 1)
        bias = scale[safe] * (FLOOR + values_t) + offset[safe]
    else:
        bias = scale * (FLOOR + values_t) + offset
    stop = bias.new_full((bias.shape[0], 1), float(policy.stop_offset))  # as document_prior's STOP column
    bias = torch.cat([bias.masked_fill(~valid, 0.0), stop], dim=1)
    stop_allowed = torch.zeros(valid.shape[0], 1, dtype=torch.bool, device=device)  # width 0: STOP only
    mask = torch.cat([~valid, stop_allowed], dim=1)
    return ShortlistEmitted(ids_t, bias, mask, L)


def sequence_log_probs(policy: ChainPolicy, joint: torch.Tensor, actions: torch.Tensor, X, *, compact: bool, **options):
    """The output layer's `sequence_log_probs` of `actions` for feature rows X: over each document's
    shortlist when `compact` and the O(M) step applies, else the dense layer with the documents' prior.
    The one dispatch teacher forcing and policy-gradient re-scoring share."""
    if compact and compact_applies(policy, X):
        return policy.output.sequence_log_probs(joint, actions, shortlist=document_shortlist(policy, X), **options)
    return policy.output.sequence_log_probs(joint, actions, prior=policy.document_prior(X), **options)


def shortlist_start(policy: ChainPolicy, X) -> tuple[ChainState, ShortlistEmitted]:
    """`policy.initial_state(X)` without the dense (B, L + 1) prior (the state's `prior` is None: the
    tracker carries it), and the tracker. A prior policy has no guidance (PolicyConfig refuses it),
    so its encoding is the text features' alone."""
    from labelchain.agents.policy import ChainState

    tracker = document_shortlist(policy, X)
    text = X[:, : policy.n_features]
    doc = policy._encode_text(text)
    return ChainState(torch.tanh(policy.init_hidden(doc)), doc, None), tracker

"""How a peer's prior scores reach the chain policy: extra feature columns, one per label.

A prior policy (`PolicyConfig.prior` != "none") reads feature rows of width F + L: the F text
features, then one column per label holding `prior - FLOOR` for the labels the document's prior
stores (its top-M peer labels) and 0 for every other label. So
  * the prior of label l is FLOOR + column l (a label not stored sits at the floor, as
    `agents.prior.to_dense` has it);
  * with a shortlist, the document's action space is the labels whose column is > 0, plus STOP.
A stored score at or below the floor enters as FLOOR + PRIOR_EPS, so it stays in the shortlist.
Carrying the prior in the feature rows means every path that hands feature rows to the policy
(decoders, teacher forcing, the RL collector, the environments' observations, SB3) carries it
without a second argument, and a document's rows cannot be paired with another document's prior.

The shortlist the environments mask with (`envs.shortlist.shortlist_from_scores`) and the columns the
policy masks with (`prior_columns`) come from the same `envs.shortlist.top_stored` selection, so the two masks are equal by
construction (tests hold them to it). numpy/scipy only: the policy imports this module.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from labelchain.envs.shortlist import top_stored

PRIOR_PEERS = ("ovr_logistic", "omikuji")  # the peers whose scores can be a chain's prior (agents.prior)
FLOOR = math.log(1e-6)  # the prior of a label the peer did not rank (about -13.8)
PRIOR_EPS = 1e-3  # a stored score at the floor still marks its label as shortlisted


def prior_columns(scores: sp.csr_matrix, shortlist: int | None = None) -> sp.csr_matrix:
    """The L prior feature columns of `scores` (CSR, the chain's units): stored entries (the top
    `shortlist` of them when given) as max(score - FLOOR, PRIOR_EPS), every other label 0."""
    kept = top_stored(scores, shortlist)
    values = np.maximum(kept.data.astype(np.float64) - FLOOR, PRIOR_EPS).astype(np.float32)
    return sp.csr_matrix((values, kept.indices, kept.indptr), shape=kept.shape)


def with_prior_columns(X, columns: sp.csr_matrix):
    """Feature rows X (dense or sparse) with the prior columns appended: sparse X stays CSR, dense X
    (few labels) stays dense."""
    if X.shape[0] != columns.shape[0]:
        raise ValueError(f"prior has {columns.shape[0]} rows, the features {X.shape[0]}")
    if sp.issparse(X):
        return sp.csr_matrix(sp.hstack([sp.csr_matrix(X, dtype=np.float32), columns], format="csr"))
    return np.hstack([np.asarray(X, dtype=np.float32), columns.toarray()])


def shortlist_in_columns(X, n_features: int, n_labels: int) -> sp.csr_matrix:
    """Bool CSR (n, L) of the labels whose prior column is > 0: the shortlist a shortlisting policy
    masks to, for the environments its learners step (equal to `envs.shortlist.shortlist_from_scores`
    of the scores the columns were built from). The learners call this on the whole training split,
    where a dense (n, L) block was 7.2 GB (twice, with its copy) at 18,000 documents x 100,000 labels."""
    return prior_entries(X, n_features, n_labels).astype(bool)


def prior_entries(X, n_features: int, n_labels: int) -> sp.csr_matrix:
    """The prior columns > 0 of feature rows X (width F + L) as canonical float32 CSR (n, L): each
    document's shortlist and its column values. Sparse rows stay sparse (no (n, L) block); a repeated
    entry counts by its sum, as in the dense rows."""
    check_prior_width(X, n_features, n_labels)
    columns = sp.csr_matrix(X[:, n_features:] if sp.issparse(X) else np.asarray(X)[:, n_features:], dtype=np.float32)
    columns.sum_duplicates()  # also sorts each row's columns
    columns.data[columns.data <= 0] = 0
    columns.eliminate_zeros()
    return columns


def check_prior_width(X, n_features: int, n_labels: int) -> None:
    """One line when rows of X are not F text features + L prior columns wide."""
    width = int(X.shape[1])
    if width != n_features + n_labels:
        raise ValueError(
            f"features have {width} columns; a prior policy expects {n_features} text features + "
            f"{n_labels} prior columns = {n_features + n_labels} (agents.prior_columns.with_prior_columns)"
        )


def split_prior_columns(X, n_features: int, n_labels: int):
    """(text feature rows, prior columns as a dense (B, L) array, or tensor for tensor rows) of rows of width F + L."""
    check_prior_width(X, n_features, n_labels)
    if sp.issparse(X):
        csr = sp.csr_matrix(X)
        return csr[:, :n_features], csr[:, n_features:].toarray().astype(np.float32, copy=False)
    if hasattr(X, "detach"):  # a torch tensor (SB3 observations): the policy converts both halves
        return X[:, :n_features], X[:, n_features:]
    array = np.asarray(X, dtype=np.float32)
    return array[:, :n_features], np.ascontiguousarray(array[:, n_features:])

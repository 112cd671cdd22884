"""Shortlists: each document's chain may emit only its M best peer labels (issue 16's matcher -> ranker).

Why: a cheap matcher (a tuned peer) picks each document's top-M labels and the chain ranks inside
them, so a step costs O(M), not O(L), and the chain starts from the matcher's recall.

A shortlist is an (n_docs, L) bool CSR matrix, row i the labels document i may emit
(`check_shortlist_matrix` builds and checks one; `shortlist_from_scores` takes each row's top M of a
stored-score matrix such as `agents.prior.PriorScores.part(...)`). The one mask rule
(`allowed_actions`), used by `LabelChainEnv`, `LabelChainVectorEnv` and therefore by SB3's
``action_masks()``:

  * label l (0 <= l < L) is allowed iff it was not emitted yet AND it is in the document's shortlist;
  * STOP (id L) is always allowed (a document with an empty shortlist can only STOP).

So a label outside the shortlist can never be emitted, and a gold label outside it is recall lost
by the matcher (the reward and every metric still count it as gold: nothing is hidden). An
environment treats an out-of-shortlist action exactly as a repeated label: a wasted step.

numpy and scipy only: the environments and the torch side (decoders, teacher forcing, the RL
collector) all call this rule, so it must import nothing heavier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def check_shortlist_matrix(shortlist: Any, n_docs: int, n_labels: int, name: str = "shortlist") -> sp.csr_matrix:
    """`shortlist` (scipy sparse, or a dense bool / 0-1 array) as an (n_docs, n_labels) bool CSR with
    sorted indices and no stored False; a one-line ValueError naming the problem otherwise.

    Sparse: every stored nonzero entry is a shortlisted label; stored values must be 0/1 (or bool), so
    a matrix of scores is refused rather than silently read as its nonzero pattern (take its top M
    with `shortlist_from_scores`). A row with no label is fine: that document can only STOP.
    """
    if sp.issparse(shortlist):
        if len(shortlist.shape) != 2:
            raise ValueError(f"{name}: must be a 2-D (documents, labels) matrix, got shape {shortlist.shape}")
        matrix = sp.csr_matrix(shortlist)
        values = matrix.data
    else:
        try:
            array = np.asarray(shortlist)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: not a matrix ({error})") from None
        if array.ndim != 2:
            raise ValueError(f"{name}: must be a 2-D (documents, labels) matrix, got shape {array.shape}")
        matrix, values = None, array
    shape = tuple(int(s) for s in (matrix.shape if matrix is not None else values.shape))
    if shape != (n_docs, n_labels):
        raise ValueError(f"{name}: shape {shape}, expected ({n_docs} documents, {n_labels} labels)")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name}: entries must be bool or 0/1, got dtype {values.dtype}")
    if values.dtype.kind != "b" and values.size and not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))].reshape(-1)[0]
        raise ValueError(
            f"{name}: entries must be bool or 0/1, found {bad.item()!r} (scores? take each row's top M "
            "with envs.shortlist.shortlist_from_scores)"
        )
    out = sp.csr_matrix(matrix if matrix is not None else values, dtype=bool)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def top_stored(scores: sp.spmatrix, m: int | None) -> sp.csr_matrix:
    """Each row's `m` highest stored scores (ties to the lower label id) with their values, float32 CSR
    with sorted indices; every stored entry when m is None. Rows with fewer than `m` stored entries
    keep all of them (Omikuji's can). The one selection behind shortlists and a prior's columns."""
    csr = sp.csr_matrix(scores, dtype=np.float32, copy=True)  # sum_duplicates sorts in place: never the caller's
    csr.sum_duplicates()
    if m is None:
        return csr
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"shortlist size M={m!r} must be a whole number >= 1")
    n_rows = csr.shape[0]
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(n_rows), counts)
    # One stable sort: by row, then by score descending, then by label id ascending.
    order = np.lexsort((csr.indices, -csr.data.astype(np.float64), rows))
    rank = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    keep = np.sort(order[rank < m])  # `order` keeps rows contiguous, so rank is the position inside the row
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=n_rows))]).astype(np.int64)
    return sp.csr_matrix((csr.data[keep], csr.indices[keep], indptr), shape=csr.shape)


def shortlist_from_scores(scores: sp.spmatrix, m: int) -> sp.csr_matrix:
    """Bool CSR of each row's `top_stored(scores, m)` labels: the shortlist the environments mask to
    and `agents.prior.recall_at(scores, Y, m)` measures."""
    kept = top_stored(scores, m)
    return sp.csr_matrix((np.ones(kept.nnz, dtype=bool), kept.indices, kept.indptr), shape=kept.shape)


def allowed_actions(emitted: Any, shortlist_rows: Any) -> np.ndarray:
    """THE shortlist mask rule: label l allowed iff not emitted and shortlisted; STOP (id L) always.

    `emitted`: bool, one document (L,) / (L + 1,) or a batch (N, L) / (N, L + 1) (an (L + 1)-th STOP
    column is ignored). `shortlist_rows`: those documents' shortlist rows, a CSR or dense (N, L)
    (or (L,) for one document). Returns bool (L + 1,) or (N, L + 1), freshly allocated.
    """
    emitted = np.asarray(emitted, dtype=bool)
    single = emitted.ndim == 1
    emitted = emitted[None] if single else emitted
    if sp.issparse(shortlist_rows):
        rows = np.asarray(shortlist_rows.toarray(), dtype=bool)
    else:
        rows = np.asarray(shortlist_rows, dtype=bool)
    rows = rows[None] if rows.ndim == 1 else rows
    if emitted.ndim != 2 or rows.ndim != 2:
        raise ValueError(f"allowed_actions: emitted {emitted.shape} and shortlist rows {rows.shape} must be 1-D or 2-D")
    n, n_labels = rows.shape
    if emitted.shape[0] != n or emitted.shape[1] not in (n_labels, n_labels + 1):
        raise ValueError(
            f"allowed_actions: emitted mask {emitted.shape} does not fit shortlist rows {rows.shape} "
            f"(expected ({n}, {n_labels}) or ({n}, {n_labels + 1}))"
        )
    allowed = np.ones((n, n_labels + 1), dtype=bool)
    np.logical_and(rows, ~emitted[:, :n_labels], out=allowed[:, :n_labels])
    return allowed[0] if single else allowed

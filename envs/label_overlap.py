"""Overlapping label clusters (label disentanglement, Liu et al., NeurIPS 2021; PECOS overlap-xmc).

A label whose documents split across topics sits badly in any single cluster. After a first model
is trained on plain clusters, count how often each label co-occurs with the clusters the model
predicts for its training documents (C = Yᵀ·M) and let each label join up to λ clusters by count.
`assign_overlapping` lists a label's clusters as label *columns* (copies, PECOS' layout);
`membership_matrix` turns them into the (L, C) membership the guidance uses: a label sits in each
of its clusters, and the label space itself does not grow.

Everything works on a cluster assignment array `label_cluster` (label id -> cluster id), however it
was made (k-means on PIFA, a tree level, by hand). Column layout of the result: column j < L is
label j in its first cluster; copies follow in the order they were assigned.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp

from labelchain.envs.metric_core import LabelMatrix


def _check_assignment(label_cluster: np.ndarray, n_clusters: int | None = None) -> tuple[np.ndarray, int]:
    assign = np.asarray(label_cluster)
    if assign.ndim != 1 or assign.size == 0 or not np.issubdtype(assign.dtype, np.integer) or (assign < 0).any():
        raise ValueError("label_cluster must be a non-empty 1-D array of non-negative integer cluster ids")
    needed = int(assign.max()) + 1
    if n_clusters is None:
        n_clusters = needed
    elif n_clusters < needed:
        raise ValueError(f"n_clusters={n_clusters} but label_cluster uses cluster id {needed - 1}")
    return assign.astype(np.int64), int(n_clusters)


def _label_csr(Y: LabelMatrix, n_labels: int, name: str) -> sp.csr_matrix:
    csr = sp.csr_matrix(Y, dtype=bool)
    if csr.ndim != 2 or csr.shape[1] != n_labels:
        raise ValueError(f"{name} must have shape (n, {n_labels}), got {csr.shape}")
    return csr


def cluster_matrix(label_cluster: np.ndarray, n_clusters: int | None = None) -> sp.csr_matrix:
    """(L, C) 0/1 int64 matrix with a 1 at (label, its cluster)."""
    assign, n_clusters = _check_assignment(label_cluster, n_clusters)
    ones = np.ones(assign.size, dtype=np.int64)
    return sp.csr_matrix((ones, (np.arange(assign.size), assign)), shape=(assign.size, n_clusters))


def document_clusters(
    Y: LabelMatrix, clusters: np.ndarray | sp.spmatrix, n_clusters: int | None = None
) -> sp.csr_matrix:
    """(n, C) bool: the clusters of each document's labels (gold Y: its gold clusters; a predicted
    label set: the clusters the model matched it to). `clusters` is an assignment array (label ->
    cluster) or an (L, C) membership matrix where a label may sit in several clusters
    (`membership_matrix` of overlapping clusters)."""
    if sp.issparse(clusters):
        B = sp.csr_matrix(clusters, dtype=np.int64)
        if n_clusters is not None and B.shape[1] != n_clusters:
            raise ValueError(f"membership matrix has {B.shape[1]} clusters, n_clusters={n_clusters}")
    else:
        B = cluster_matrix(clusters, n_clusters)
    out = (_label_csr(Y, B.shape[0], "Y").astype(np.int64) @ B).astype(bool).tocsr()
    out.eliminate_zeros()
    return out


def cooccurrence_counts(Y: LabelMatrix, M: LabelMatrix) -> sp.csr_matrix:
    """C = Yᵀ·M (L, C) int64: C[l, c] = training documents carrying l that the model matched to c."""
    Yc = sp.csr_matrix(Y, dtype=bool)
    Mc = sp.csr_matrix(M, dtype=bool)
    if Yc.shape[0] != Mc.shape[0]:
        raise ValueError(f"Y has {Yc.shape[0]} documents but M has {Mc.shape[0]}")
    return (Yc.T.astype(np.int64) @ Mc.astype(np.int64)).tocsr()


@dataclass(frozen=True)
class OverlappingLabels:
    """Label columns after overlap: column j is label `column_label[j]` in cluster `column_cluster[j]`."""

    column_label: np.ndarray
    column_cluster: np.ndarray
    n_labels: int

    @property
    def n_copies(self) -> int:
        """Extra columns beyond one per label."""
        return self.column_label.size - self.n_labels


def assign_overlapping(
    counts: sp.spmatrix | np.ndarray, label_cluster: np.ndarray, max_copies: int
) -> OverlappingLabels:
    """Give each label up to `max_copies` (λ) clusters, greedily by co-occurrence count.

    Pairs (label, cluster) with a positive count are visited in descending count (ties: the label's
    own cluster first, then lower label id, then lower cluster id); a pair is taken while its label
    has fewer than λ clusters. A label's first pair sets its primary cluster (column = label id),
    later ones add copies. Labels with no positive count keep their original cluster. With λ = 1
    and the gold clusters as M, every label keeps its cluster (its own cluster has the top count).
    """
    if isinstance(max_copies, bool) or not isinstance(max_copies, Integral) or max_copies < 1:
        raise ValueError(f"max_copies (lambda) must be a positive integer, got {max_copies!r}")
    assign, n_clusters = _check_assignment(label_cluster)
    coo = sp.coo_matrix(counts)
    if coo.shape[0] != assign.size or coo.shape[1] < n_clusters:
        raise ValueError(f"counts has shape {coo.shape}, expected ({assign.size}, >= {n_clusters})")
    if (coo.data < 0).any():
        raise ValueError("counts must be non-negative")
    positive = coo.data > 0
    labels, clusters, values = coo.row[positive], coo.col[positive], coo.data[positive]
    own = clusters == assign[labels]
    order = np.lexsort((clusters, labels, ~own, -values))
    primary = assign.copy()
    taken = np.zeros(assign.size, dtype=np.int64)
    copy_labels: list[int] = []
    copy_clusters: list[int] = []
    for label, cluster in zip(labels[order].tolist(), clusters[order].tolist()):
        if taken[label] >= max_copies:
            continue
        if taken[label] == 0:
            primary[label] = cluster
        else:
            copy_labels.append(label)
            copy_clusters.append(cluster)
        taken[label] += 1
    return OverlappingLabels(
        column_label=np.concatenate((np.arange(assign.size), np.asarray(copy_labels, dtype=np.int64))),
        column_cluster=np.concatenate((primary, np.asarray(copy_clusters, dtype=np.int64))),
        n_labels=assign.size,
    )


def membership_matrix(overlap: OverlappingLabels, n_clusters: int) -> sp.csr_matrix:
    """(L, C) bool: label l sits in every cluster one of its columns was assigned to."""
    if n_clusters <= int(overlap.column_cluster.max()):
        raise ValueError(f"n_clusters={n_clusters} but the overlap uses cluster id {overlap.column_cluster.max()}")
    ones = np.ones(overlap.column_label.size, dtype=bool)
    out = sp.csr_matrix((ones, (overlap.column_label, overlap.column_cluster)), shape=(overlap.n_labels, n_clusters))
    out.sum_duplicates()
    return out

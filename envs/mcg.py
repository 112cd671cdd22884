"""MCG, XLGen's multitask cluster generation: the chain first emits cluster tokens, then labels.

Why: a tail label has few training documents but its cluster has many; a chain that first commits
to the document's clusters (an easier, denser decision) decides its labels conditioned on them.

Action space of an MCG chain over L labels and C clusters (A = L + C):
  * ids 0..L-1 are labels, L..L+C-1 cluster tokens (cluster c is id L + c), A is STOP;
  * gold sequence of a document: its gold clusters (the clusters of its gold labels, `augment`),
    then its gold labels, then STOP.

The action constraint, a function of the emitted mask E (n, A + 1) alone (`allowed_actions`):
  * nothing emitted is emitted again (as in every chain);
  * a cluster token is allowed only while no label has been emitted (clusters come first, once);
  * with `restrict`, a label is allowed only if it is a member of an emitted cluster (union of
    the members; with no cluster emitted no label is allowed, so the chain starts with a cluster);
  * STOP is always allowed, except where the decoder suppresses it (ranking decodes): then it is
    allowed only when nothing else is.
The reward and every metric count labels only (columns 0..L-1; `strip`). This module is numpy only
(the environments use it); `agents.mcg.MCGConstraint` is the same rule in torch, tested equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labelchain.envs.actions import integer_array
from labelchain.envs.data.dataset import Split
from labelchain.envs.label_overlap import document_clusters


@dataclass(frozen=True)
class MCGSpec:
    """Cluster membership (L, C) bool CSR (a label may sit in several clusters) and the restriction."""

    membership: sp.csr_matrix
    restrict: bool = False

    def __post_init__(self) -> None:
        member = sp.csr_matrix(self.membership, dtype=bool)
        if member.ndim != 2 or member.shape[0] < 1 or member.shape[1] < 1:
            raise ValueError(f"mcg membership must be a non-empty (L, C) matrix, got shape {member.shape}")
        member.eliminate_zeros()
        member.sort_indices()
        object.__setattr__(self, "membership", member)
        object.__setattr__(self, "restrict", bool(self.restrict))

    @classmethod
    def from_assignment(cls, label_cluster: np.ndarray, n_clusters: int, restrict: bool = False) -> MCGSpec:
        """One cluster per label (label id -> cluster id, e.g. `kmeans_clusters`)."""
        assign = np.asarray(label_cluster, dtype=np.int64)
        if assign.ndim != 1 or (assign < 0).any() or (assign >= n_clusters).any():
            raise ValueError(f"label_cluster must be a 1-D array of cluster ids in 0..{n_clusters - 1}")
        ones = np.ones(assign.size, dtype=bool)
        return cls(sp.csr_matrix((ones, (np.arange(assign.size), assign)), shape=(assign.size, n_clusters)), restrict)

    @property
    def n_labels(self) -> int:
        return int(self.membership.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.membership.shape[1])

    @property
    def n_actions(self) -> int:
        """Labels and cluster tokens (STOP is one more, id n_actions)."""
        return self.n_labels + self.n_clusters

    # ------------------------------------------------------------------ persistence (policy config)
    def config(self) -> dict:
        """JSON-able form: each label's clusters, and the restriction."""
        member = self.membership
        clusters = [member.indices[member.indptr[i] : member.indptr[i + 1]].tolist() for i in range(self.n_labels)]
        return {"n_clusters": self.n_clusters, "clusters_of_label": clusters, "restrict": self.restrict}

    @classmethod
    def from_config(cls, config: dict) -> MCGSpec:
        try:
            clusters, n_clusters = config["clusters_of_label"], int(config["n_clusters"])
            rows = np.repeat(np.arange(len(clusters)), [len(c) for c in clusters])
            cols = np.concatenate([integer_array(c, "cluster id") for c in clusters]) if clusters else rows
            member = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(clusters), n_clusters))
            return cls(member, bool(config.get("restrict", False)))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"mcg config needs n_clusters and clusters_of_label ({error})") from None

    # ------------------------------------------------------------------ label matrices
    def augment(self, Y) -> sp.csr_matrix:
        """[Y | M] (n, L + C) bool: the gold labels, then the gold clusters (those of the gold labels)."""
        Y = sp.csr_matrix(Y, dtype=bool)
        if Y.shape[1] != self.n_labels:
            raise ValueError(f"mcg: label matrix has {Y.shape[1]} columns, the membership {self.n_labels} labels")
        clusters = document_clusters(Y, self.membership.astype(np.int64), self.n_clusters)
        out = sp.hstack([Y, clusters], format="csr").astype(bool)
        out.sort_indices()
        return out

    def augment_split(self, split: Split) -> Split:
        """The split a chain is trained on: features unchanged, labels `augment`ed."""
        return Split(split.X, self.augment(split.Y))

    def strip(self, A):
        """The L label columns of (n, L + C) predictions or scores (CSR or array); width L passes as is."""
        width = A.shape[1]
        if width == self.n_labels:
            return A
        if width != self.n_actions:
            raise ValueError(f"mcg: expected {self.n_labels} or {self.n_actions} columns, got {width}")
        return A[:, : self.n_labels]

    # ------------------------------------------------------------------ the action constraint
    def allowed_actions(self, emitted: np.ndarray, suppress_stop: np.ndarray | bool = False) -> np.ndarray:
        """(n, A + 1) bool of the actions allowed after the emitted mask `emitted` (see the module)."""
        emitted = np.asarray(emitted, dtype=bool)
        L, A = self.n_labels, self.n_actions
        if emitted.ndim != 2 or emitted.shape[1] != A + 1:
            raise ValueError(f"mcg: emitted mask must be (n, {A + 1}), got {emitted.shape}")
        allowed = ~emitted
        allowed[:, A] = True
        allowed[:, L:A] &= ~emitted[:, :L].any(axis=1, keepdims=True)
        if self.restrict:
            chosen = sp.csr_matrix(emitted[:, L:A].astype(np.float32))
            allowed[:, :L] &= (chosen @ self.membership.T.astype(np.float32)).toarray() > 0
        suppress = np.broadcast_to(np.asarray(suppress_stop, dtype=bool), (emitted.shape[0],))
        allowed[:, A] &= ~(suppress & allowed[:, :A].any(axis=1))
        return allowed


def emitted_mask(history: np.ndarray, n_actions: int) -> np.ndarray:
    """(n, A + 1) bool emitted mask of (n, T) histories padded with A (= STOP; its column stays False)."""
    history = integer_array(history, "history")
    mask = np.zeros((history.shape[0], n_actions + 1), dtype=bool)
    mask[np.arange(history.shape[0])[:, None], history] = True
    mask[:, n_actions] = False
    return mask

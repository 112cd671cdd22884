"""Label embeddings, flat label clusters and a balanced label tree (numpy/scipy only; no torch).

Why: extreme label spaces cannot be scored label by label at every chain step. PECOS (XR-Linear)
groups labels by PIFA embeddings into a hierarchical balanced spherical k-means tree and searches it
top-down; XLGen guides generation with flat k-means clusters. This module builds both, seeded and
deterministic, so the policy's tree-factored output layer (agents.output_layers) can use the tree.

  * `pifa_embeddings(X, Y)`: PECOS' PIFA: L2-normalise each document row of Y, form Yᵀ·X, L2-normalise
    each label row. A label with no training document gets a zero row.
  * `kmeans_clusters(emb, k, seed)`: flat spherical k-means (cosine), one cluster id per label.
  * `build_label_tree(emb, branching, max_leaf_size, seed)`: every node is split into min(B, n)
    children whose sizes differ by at most one, level by level, until leaves hold at most
    `max_leaf_size` labels; all leaves sit at the same depth.

Labels without a training document (zero embedding) score 0 against every centroid: in the tree the
balance constraint places them (ties broken by label id, so they fill whichever child has room); in
flat k-means they are dealt round-robin over the clusters in label-id order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

Embeddings: TypeAlias = "np.ndarray | sp.csr_matrix"


# ----------------------------------------------------------------------------- embeddings
def _normalize_rows(matrix: Embeddings) -> Embeddings:
    """Unit L2 norm per row; all-zero rows stay zero."""
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(inverse.astype(np.float32)) @ matrix, dtype=np.float32)
    dense = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)


def pifa_embeddings(X, Y) -> Embeddings:
    """PIFA label embeddings (L, F): CSR if X is sparse, a dense array otherwise (float32)."""
    Y = sp.csr_matrix(Y, dtype=np.float32)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} documents but Y has {Y.shape[0]}")
    Y.data[:] = 1.0  # a label is present or not; PECOS binarises too
    label_rows = _normalize_rows(Y)
    if sp.issparse(X):
        return _normalize_rows(sp.csr_matrix(label_rows.T @ sp.csr_matrix(X, dtype=np.float32)))
    return _normalize_rows(np.asarray(label_rows.T @ np.asarray(X, dtype=np.float32)))


# ----------------------------------------------------------------------------- spherical k-means
def _scores(emb: Embeddings, centroids: np.ndarray) -> np.ndarray:
    """Cosine scores (n, k) of unit rows against unit centroids."""
    return np.asarray(emb @ centroids.T, dtype=np.float64)


def _centroids(emb: Embeddings, assign: np.ndarray, k: int, previous: np.ndarray) -> np.ndarray:
    """Normalised member sums; a cluster whose members sum to zero keeps its previous centroid."""
    n = emb.shape[0]
    members = sp.csr_matrix((np.ones(n, np.float32), (assign, np.arange(n))), shape=(k, n))
    sums = members @ emb
    sums = np.asarray(sums.toarray() if sp.issparse(sums) else sums, dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), previous)


def _initial_centroids(emb: Embeddings, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct rows, drawn among the non-zero rows first (zero rows point nowhere)."""
    norms = np.asarray(abs(emb).sum(axis=1)).ravel()
    nonzero, zero = np.flatnonzero(norms > 0), np.flatnonzero(norms == 0)
    chosen = np.concatenate([rng.permutation(nonzero), zero])[:k]
    rows = emb[chosen]
    return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float64)


def balanced_assignment(scores: np.ndarray) -> np.ndarray:
    """Assign n items to c clusters with sizes differing by at most one (cluster j gets the extra ones
    first), following the score differences: cluster j (in turn) takes the items whose score for j
    exceeds their best score among the clusters not yet filled by the most. For c = 2 this is PECOS'
    split: sort by s0 - s1 and cut in the middle. Ties go to the lower item index (stable sort).
    """
    n, c = scores.shape
    sizes = np.full(c, n // c) + (np.arange(c) < n % c)
    assign = np.full(n, c - 1, dtype=np.int64)
    remaining = np.arange(n)
    for j in range(c - 1):
        rest = scores[remaining][:, j + 1 :].max(axis=1)
        margin = scores[remaining, j] - rest
        take = np.argsort(-margin, kind="stable")[: sizes[j]]
        assign[remaining[take]] = j
        remaining = np.delete(remaining, take)
    return assign


def _balanced_kmeans(emb: Embeddings, k: int, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """Balanced spherical k-means of the rows of `emb` into k clusters (sizes differ by <= 1)."""
    centroids = _initial_centroids(emb, k, rng)
    assign = balanced_assignment(_scores(emb, centroids))
    for _ in range(n_iter):
        centroids = _centroids(emb, assign, k, centroids)
        new = balanced_assignment(_scores(emb, centroids))
        if np.array_equal(new, assign):
            break
        assign = new
    return assign


def kmeans_clusters(emb: Embeddings, k: int, seed: int = 0, n_iter: int = 20) -> np.ndarray:
    """Flat spherical k-means (not balanced): cluster id (L,) per label, ids 0..k-1, seeded.

    An emptied cluster is re-seeded with the label that fits its current cluster worst.
    """
    n = emb.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= number of labels ({n}), got k={k}")
    rng = np.random.default_rng(seed)
    zero = np.asarray(abs(emb).sum(axis=1)).ravel() == 0
    centroids = _initial_centroids(emb, k, rng)
    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(n_iter):
        scores = _scores(emb, centroids)
        new = scores.argmax(axis=1)
        new[zero] = np.arange(int(zero.sum())) % k
        for empty in np.setdiff1d(np.arange(k), new):  # rare: re-seed, deterministic
            fit = scores[np.arange(n), new]
            fit[zero] = np.inf
            worst = int(np.argmin(fit))
            new[worst] = empty
            scores[worst] = -np.inf
        if np.array_equal(new, assign):
            break
        assign = new
        centroids = _centroids(emb, assign, k, centroids)
    return assign


# ----------------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class LabelTree:
    """A balanced label tree with all leaves at depth `depth` (the root is level 0).

    parents[d][i] = index (at level d) of the parent of node i at level d + 1; children of a node are
    contiguous and in parent order. Leaf j (a node of level `depth`) holds the labels
    leaf_labels[leaf_indptr[j]:leaf_indptr[j + 1]], ascending; every label is in exactly one leaf.
    """

    n_labels: int
    branching: int
    max_leaf_size: int
    parents: tuple[np.ndarray, ...]
    leaf_indptr: np.ndarray
    leaf_labels: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.parents)

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_indptr) - 1

    def level_sizes(self) -> list[int]:
        """Number of nodes per level 0..depth."""
        return [1] + [len(p) for p in self.parents]

    def leaf_of_label(self) -> np.ndarray:
        """(L,) the leaf holding each label."""
        leaf = np.empty(self.n_labels, dtype=np.int64)
        leaf[self.leaf_labels] = np.repeat(np.arange(self.n_leaves), np.diff(self.leaf_indptr))
        return leaf

    def ancestors(self) -> np.ndarray:
        """(L, depth): column d - 1 = the label's node at level d (last column = its leaf)."""
        out = np.empty((self.n_labels, self.depth), dtype=np.int64)
        node = self.leaf_of_label()
        for d in range(self.depth, 0, -1):
            out[:, d - 1] = node
            node = self.parents[d - 1][node]
        return out

    def to_dict(self) -> dict:
        """JSON-able form (plain ints and lists) saved with a policy's config."""
        return {
            "n_labels": self.n_labels,
            "branching": self.branching,
            "max_leaf_size": self.max_leaf_size,
            "parents": [p.tolist() for p in self.parents],
            "leaf_indptr": self.leaf_indptr.tolist(),
            "leaf_labels": self.leaf_labels.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LabelTree:
        """Inverse of `to_dict`; checks the structure and names the field that is wrong."""
        try:
            tree = cls(
                n_labels=int(data["n_labels"]),
                branching=int(data["branching"]),
                max_leaf_size=int(data["max_leaf_size"]),
                parents=tuple(np.asarray(p, dtype=np.int64) for p in data["parents"]),
                leaf_indptr=np.asarray(data["leaf_indptr"], dtype=np.int64),
                leaf_labels=np.asarray(data["leaf_labels"], dtype=np.int64),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"label tree: missing or malformed field ({error!r})") from None
        tree.check()
        return tree

    def check(self) -> None:
        """Raise ValueError naming the field if the arrays do not describe a valid tree."""
        if self.depth < 1:
            raise ValueError("label tree: parents must hold at least one level")
        for d, parent in enumerate(self.parents):
            n_above = 1 if d == 0 else len(self.parents[d - 1])
            if parent.ndim != 1 or len(parent) == 0 or np.any(np.diff(parent) < 0):
                raise ValueError(f"label tree: parents[{d}] must be a non-empty non-decreasing 1-D array")
            if parent[0] != 0 or parent[-1] != n_above - 1 or np.any(np.diff(parent) > 1):
                raise ValueError(f"label tree: parents[{d}] must give every node of level {d} a child")
        if len(self.leaf_indptr) != len(self.parents[-1]) + 1 or self.leaf_indptr[0] != 0:
            raise ValueError("label tree: leaf_indptr must have one entry per leaf + 1, starting at 0")
        if np.any(np.diff(self.leaf_indptr) < 1) or self.leaf_indptr[-1] != len(self.leaf_labels):
            raise ValueError("label tree: leaf_indptr must be increasing and end at len(leaf_labels)")
        if not np.array_equal(np.sort(self.leaf_labels), np.arange(self.n_labels)):
            raise ValueError(f"label tree: leaf_labels must hold each of the {self.n_labels} labels exactly once")


def tree_depth(n_labels: int, branching: int, max_leaf_size: int) -> int:
    """Levels needed so that balanced splits leave at most `max_leaf_size` labels per leaf (>= 1)."""
    depth = 1
    while -(-n_labels // branching**depth) > max_leaf_size:
        depth += 1
    return depth


def build_label_tree(emb: Embeddings, branching: int, max_leaf_size: int, seed: int = 0, n_iter: int = 20) -> LabelTree:
    """Hierarchical balanced spherical k-means tree over the rows of `emb` (one row per label).

    Level by level, every node with n labels is split into min(branching, n) children by balanced
    spherical k-means (sizes differ by at most one), so node sizes at level d are at most
    ceil(L / B^d) and the depth is the smallest one giving leaves <= max_leaf_size.
    """
    n_labels = emb.shape[0]
    if branching < 2 or max_leaf_size < 1 or n_labels < 1:
        raise ValueError(
            f"need branching >= 2, max_leaf_size >= 1 and labels >= 1; got {branching}, {max_leaf_size}, {n_labels}"
        )
    emb = sp.csr_matrix(emb, dtype=np.float32) if sp.issparse(emb) else np.asarray(emb, dtype=np.float32)
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_labels)]
    parents = []
    for _ in range(tree_depth(n_labels, branching, max_leaf_size)):
        children, parent = [], []
        for index, group in enumerate(groups):
            k = min(branching, len(group))
            assign = _balanced_kmeans(emb[group], k, rng, n_iter) if k > 1 else np.zeros(len(group), np.int64)
            for j in range(k):
                children.append(group[assign == j])  # group is ascending, so members stay ascending
                parent.append(index)
        parents.append(np.asarray(parent, dtype=np.int64))
        groups = children
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    tree = LabelTree(
        n_labels=n_labels,
        branching=int(branching),
        max_leaf_size=int(max_leaf_size),
        parents=tuple(parents),
        leaf_indptr=np.concatenate([[0], np.cumsum(sizes)]),
        leaf_labels=np.concatenate(groups).astype(np.int64),
    )
    tree.check()
    return tree

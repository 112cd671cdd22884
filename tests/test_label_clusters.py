"""PIFA embeddings, flat k-means and the balanced label tree on hand-made cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.label_clusters import (
    LabelTree,
    balanced_assignment,
    build_label_tree,
    kmeans_clusters,
    pifa_embeddings,
    tree_depth,
)


def test_pifa_values_by_hand_dense_and_sparse():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=np.float32)
    Y = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=bool))
    # label 0: 1 * [1, 0] + (1/sqrt 2) * [0, 2] = [1, sqrt 2] -> / sqrt 3; label 1: [0, sqrt 2] -> [0, 1];
    # label 2 has no document: zero row.
    expected = np.array([[1 / np.sqrt(3), np.sqrt(2) / np.sqrt(3)], [0.0, 1.0], [0.0, 0.0]])
    dense = pifa_embeddings(X, Y)
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    sparse = pifa_embeddings(sp.csr_matrix(X), Y)
    assert sp.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), expected, rtol=1e-6)


def test_pifa_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="3 documents but Y has 2"):
        pifa_embeddings(np.ones((3, 2)), sp.csr_matrix(np.ones((2, 2))))


def test_balanced_assignment_by_hand():
    # Two clusters: sort by s0 - s1 = [1, 0.8, 0.6, -1, 0.7] and cut after 3 (5 items: sizes 3, 2).
    scores = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.85, 0.15]])
    np.testing.assert_array_equal(balanced_assignment(scores), [0, 0, 1, 1, 0])
    # Three clusters, everyone prefers cluster 0: it takes the two with the largest margin.
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.3], [0.8, 0.0, 0.5], [0.6, 0.5, 0.0], [0.2, 0.1, 0.9]])
    # margins for 0: [0.8, 0.1, 0.3, 0.1, -0.7] -> items 0, 2; then for 1 (vs 2) among 1, 3, 4:
    # [0.1, 0.5, -0.8] -> item 3 (sizes 2, 2, 1 -> it takes 3 and 1); item 4 goes to cluster 2.
    np.testing.assert_array_equal(balanced_assignment(scores), [0, 1, 0, 1, 2])


def _random_embeddings(n: int, dim: int, seed: int) -> np.ndarray:
    emb = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.mark.parametrize("n_labels,branching,leaf", [(37, 3, 4), (64, 2, 8), (10, 4, 1), (5, 2, 100)])
def test_tree_is_balanced_and_covers_every_label_once(n_labels, branching, leaf):
    tree = build_label_tree(_random_embeddings(n_labels, 6, 1), branching, leaf, seed=0)
    assert tree.depth == tree_depth(n_labels, branching, leaf)
    assert np.array_equal(np.sort(tree.leaf_labels), np.arange(n_labels))  # exactly one leaf each
    assert np.diff(tree.leaf_indptr).max() <= leaf
    # Children of one node differ in size by at most one, at every level.
    ancestors = tree.ancestors()
    for level in range(1, tree.depth + 1):
        sizes = np.bincount(ancestors[:, level - 1], minlength=tree.level_sizes()[level])
        parent = tree.parents[level - 1]
        assert sizes.min() >= 1
        for p in np.unique(parent):
            siblings = sizes[parent == p]
            assert siblings.max() - siblings.min() <= 1
            assert len(siblings) <= branching


def test_tree_levels_by_hand():
    # Two tight groups of 3 labels each: the first split separates them exactly.
    emb = np.array([[1, 0.1], [1, 0.0], [1, -0.1], [0.1, 1], [0.0, 1], [-0.1, 1]], dtype=np.float32)
    tree = build_label_tree(emb, branching=2, max_leaf_size=3, seed=0)
    assert tree.depth == 1
    assert {frozenset(tree.leaf_labels[0:3].tolist()), frozenset(tree.leaf_labels[3:6].tolist())} == {
        frozenset({0, 1, 2}),
        frozenset({3, 4, 5}),
    }
    np.testing.assert_array_equal(tree.parents[0], [0, 0])
    np.testing.assert_array_equal(tree.leaf_indptr, [0, 3, 6])


def test_same_seed_same_tree_and_dict_round_trip():
    emb = sp.csr_matrix(_random_embeddings(50, 5, 2))
    first = build_label_tree(emb, 3, 5, seed=7)
    second = build_label_tree(emb, 3, 5, seed=7)
    assert first.to_dict() == second.to_dict()
    again = LabelTree.from_dict(json.loads(json.dumps(first.to_dict())))
    assert again.to_dict() == first.to_dict()
    np.testing.assert_array_equal(again.ancestors(), first.ancestors())


def test_labels_without_documents_are_placed():
    # Labels 2 and 5 never occur in training: zero PIFA rows, still exactly one leaf each.
    X = _random_embeddings(20, 4, 3)
    Y = np.zeros((20, 6), dtype=bool)
    Y[:10, 0] = Y[10:, 1] = Y[::2, 3] = Y[1::2, 4] = True
    emb = pifa_embeddings(X, sp.csr_matrix(Y))
    assert np.all(emb[[2, 5]] == 0)
    tree = build_label_tree(emb, 2, 2, seed=0)
    assert np.array_equal(np.sort(tree.leaf_labels), np.arange(6))
    assert np.diff(tree.leaf_indptr).max() <= 2


def test_from_dict_names_the_broken_field():
    data = build_label_tree(_random_embeddings(8, 3, 0), 2, 2, seed=0).to_dict()
    broken = dict(data, leaf_labels=data["leaf_labels"][:-1] + [0])
    with pytest.raises(ValueError, match="leaf_labels"):
        LabelTree.from_dict(broken)
    with pytest.raises(ValueError, match="parents"):
        LabelTree.from_dict({k: v for k, v in data.items() if k != "parents"})


def test_kmeans_clusters_by_hand():
    emb = np.array([[1, 0.1], [1, 0.0], [0.1, 1], [0.0, 1], [0.0, 0.0], [0.0, 0.0], [1, -0.1]], dtype=np.float32)
    clusters = kmeans_clusters(emb, 2, seed=0)
    assert clusters[0] == clusters[1] == clusters[6] != clusters[2] == clusters[3]
    np.testing.assert_array_equal(clusters[[4, 5]], [0, 1])  # zero rows dealt round-robin
    np.testing.assert_array_equal(clusters, kmeans_clusters(emb, 2, seed=0))
    with pytest.raises(ValueError, match="k=8"):
        kmeans_clusters(emb, 8)

"""Overlapping clusters: hand-made counts, the greedy assignment, and mapping copies back to labels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from helpers import collapse_scores, collapse_sets, expand_labels

from labelchain.envs.label_overlap import (
    assign_overlapping,
    cluster_matrix,
    cooccurrence_counts,
    document_clusters,
    membership_matrix,
)

LABEL_CLUSTER = np.array([0, 0, 1, 2])
COUNTS = np.array(
    [
        [5, 3, 0],  # label 0: own cluster 0 first, then 1
        [1, 4, 4],  # label 1: tie 4/4 between clusters 1 and 2 (neither its own): lower id first
        [0, 2, 2],  # label 2: tie between its own cluster 1 and cluster 2: own first
        [0, 0, 0],  # label 3: never matched, keeps cluster 2
    ]
)


def test_counts_are_y_transpose_m():
    Y = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]])
    M = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    assert (cooccurrence_counts(Y, M).toarray() == Y.T @ M).all()
    assert cluster_matrix(LABEL_CLUSTER).toarray().tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    # document 0 has labels 0 (cluster 0) and 2 (cluster 1); document 2 labels 2, 3 -> clusters 1, 2
    assert document_clusters(Y, LABEL_CLUSTER).toarray().tolist() == [
        [True, True, False],
        [True, False, False],
        [False, True, True],
    ]
    assert document_clusters(Y, LABEL_CLUSTER, n_clusters=5).shape == (3, 5)


def test_greedy_assignment_lambda_2():
    # Visit order: (0,c0,5) (1,c1,4) (1,c2,4) (0,c1,3) (2,c1,2) (2,c2,2) (1,c0,1: label 1 is full).
    over = assign_overlapping(sp.csr_matrix(COUNTS), LABEL_CLUSTER, max_copies=2)
    assert over.column_label.tolist() == [0, 1, 2, 3, 1, 0, 2]
    assert over.column_cluster.tolist() == [0, 1, 1, 2, 2, 1, 2]
    assert over.n_labels == 4 and over.n_copies == 3


def test_greedy_assignment_lambda_1_moves_only_by_count():
    over = assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=1)
    assert over.column_label.tolist() == [0, 1, 2, 3]
    assert over.column_cluster.tolist() == [0, 1, 1, 2]  # label 1 moves to its top cluster
    assert over.n_copies == 0
    many = assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=10)  # every positive pair taken
    assert many.n_copies == np.count_nonzero(COUNTS) - 3


def test_lambda_1_with_the_gold_clusters_reproduces_the_plain_clusters():
    rng = np.random.default_rng(0)
    Y = rng.random((300, 20)) < 0.15
    label_cluster = rng.integers(0, 5, size=20)
    M = document_clusters(Y, label_cluster, n_clusters=5)
    over = assign_overlapping(cooccurrence_counts(Y, M), label_cluster, max_copies=1)
    assert over.column_cluster.tolist() == label_cluster.tolist() and over.n_copies == 0


def test_mapping_back_keeps_the_best_copy():
    over = assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=2)  # columns -> labels 0 1 2 3 1 0 2
    Y = np.array([[1, 1, 0, 0], [0, 0, 1, 1]])
    assert expand_labels(Y, over).toarray().astype(int).tolist() == [[1, 1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0, 1]]
    scores = np.array([[0.1, 0.2, 0.3, 0.4, 0.9, 0.0, 0.5], [0.8, 0.7, 0.6, 0.5, 0.1, 0.95, 0.2]])
    assert collapse_scores(scores, over).tolist() == [[0.1, 0.9, 0.5, 0.4], [0.95, 0.7, 0.6, 0.5]]
    pred = np.array([[0, 0, 0, 0, 1, 0, 1], [1, 0, 0, 0, 0, 1, 0]])
    assert collapse_sets(pred, over).toarray().tolist() == [[False, True, True, False], [True, False, False, False]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="lambda"):
        assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=0)
    with pytest.raises(ValueError, match="counts has shape"):
        assign_overlapping(COUNTS[:3], LABEL_CLUSTER, max_copies=1)
    with pytest.raises(ValueError, match="label_cluster"):
        cluster_matrix(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="n_clusters"):
        document_clusters(np.eye(4), LABEL_CLUSTER, n_clusters=2)
    with pytest.raises(ValueError, match="documents"):
        cooccurrence_counts(np.eye(4), np.eye(3))
    over = assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=2)
    with pytest.raises(ValueError, match="scores"):
        collapse_scores(np.zeros((1, 4)), over)


@pytest.mark.needs_data
def test_on_kmeans_clusters_of_a_real_dataset():
    """PIFA k-means clusters of yeast, counts from the gold clusters of a noisy 'model': the round trip
    expand -> collapse returns the labels, and λ = 2 adds copies only where counts exist."""
    from labelchain.envs import load_dataset
    from labelchain.envs.label_clusters import kmeans_clusters, pifa_embeddings

    ds = load_dataset("yeast")
    label_cluster = kmeans_clusters(pifa_embeddings(ds.train.X, ds.train.Y), 4, seed=0)
    rng = np.random.default_rng(0)
    noisy = ds.train.Y.toarray() ^ (rng.random(ds.train.Y.shape) < 0.1)  # a model's imperfect sets
    M = document_clusters(noisy, label_cluster, n_clusters=4)
    over = assign_overlapping(cooccurrence_counts(ds.train.Y, M), label_cluster, max_copies=2)
    assert 0 < over.n_copies <= len(ds.label_names)  # λ = 2: at most one copy per label
    assert set(over.column_cluster.tolist()) <= set(range(4))
    wide = expand_labels(ds.test.Y, over)
    assert (collapse_sets(wide, over) != ds.test.Y.astype(bool)).nnz == 0


def test_membership_of_overlapping_clusters_feeds_document_clusters():
    over = assign_overlapping(
        COUNTS, LABEL_CLUSTER, max_copies=2
    )  # columns: (0,c0) (1,c1) (2,c1) (3,c2) (1,c2) (0,c1) (2,c2)
    member = membership_matrix(over, 3)
    assert member.toarray().astype(int).tolist() == [[1, 1, 0], [0, 1, 1], [0, 1, 1], [0, 0, 1]]
    Y = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert document_clusters(Y, member).toarray().astype(int).tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    plain = membership_matrix(assign_overlapping(COUNTS, LABEL_CLUSTER, max_copies=1), 3)
    assert (document_clusters(Y, plain) != document_clusters(Y, np.array([0, 1, 1, 2]))).nnz == 0
    with pytest.raises(ValueError, match="n_clusters"):
        membership_matrix(over, 2)

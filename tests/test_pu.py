"""The positive-unlabelled helper: which labels are hidden, how many, and that it is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.data.pu import hide_labels

Y = np.array(
    [
        [1, 1, 0, 0, 0, 0],  # 2 labels: fraction 0.5 hides exactly 1
        [1, 1, 1, 1, 0, 0],  # 4 labels: hides exactly 2
        [0, 0, 0, 0, 0, 1],  # 1 label: always kept
        [0, 0, 0, 0, 0, 0],  # no labels: stays empty
        [1, 1, 1, 1, 1, 1],  # 6 labels: hides exactly 3
    ]
)


def test_exact_counts_subset_and_at_least_one_kept():
    hidden = hide_labels(Y, 0.5, seed=0)
    assert hidden.dtype == bool and hidden.shape == Y.shape
    assert np.diff(hidden.indptr).tolist() == [1, 2, 1, 0, 3]
    dense = hidden.toarray()
    assert not (dense & ~Y.astype(bool)).any()  # only removes, never adds
    assert Y.sum() == 13  # the input is untouched
    # fraction 1 keeps exactly one label per labelled document; fraction 0 keeps all.
    assert np.diff(hide_labels(Y, 1.0, seed=3).indptr).tolist() == [1, 1, 1, 0, 1]
    assert (hide_labels(sp.csr_matrix(Y), 0.0, seed=3).toarray() == Y.astype(bool)).all()


def test_seeded():
    a, b = hide_labels(Y, 0.5, seed=7), hide_labels(Y, 0.5, seed=7)
    assert (a != b).nnz == 0
    differs = [(hide_labels(Y, 0.5, seed=s) != a).nnz > 0 for s in range(8)]
    assert any(differs)  # the choice of hidden labels depends on the seed


def test_every_label_is_equally_likely_to_be_hidden_and_rounding_is_unbiased():
    rng = np.random.default_rng(0)
    big = rng.random((4000, 10)) < 0.3
    big[:, 0] = True  # at least one label per row
    hidden = hide_labels(big, 0.3, seed=1)
    sizes, kept = big.sum(axis=1), np.diff(hidden.indptr)
    expected = np.minimum(0.3 * sizes, sizes - 1)  # stochastic rounding: right on average
    assert abs((sizes - kept).mean() - expected.mean()) < 0.05
    removed_per_label = (big & ~hidden.toarray()).sum(axis=0) / big.sum(axis=0)
    assert removed_per_label.max() - removed_per_label.min() < 0.08


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_bad_fraction_names_the_flag(bad):
    with pytest.raises(ValueError, match="hide-train-labels"):
        hide_labels(Y, bad, seed=0)

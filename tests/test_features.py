"""labelchain.agents.features: every input form gives the same encoder input, on tiny hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.features import doc_features, input_normalization, sparse_linear

X = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]], dtype=np.float32)
W = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
XW = torch.tensor([[9.0, 90.0], [0.0, 0.0], [6.0, 60.0]])  # X @ W by hand


@pytest.mark.parametrize("form", ["ndarray", "csr", "tensor"])
def test_every_form_gives_the_same_product(form):
    rows = {"ndarray": X, "csr": sp.csr_matrix(X), "tensor": torch.from_numpy(X)}[form]
    features = doc_features(rows)
    assert (features.n_rows, features.n_features) == (3, 3)
    assert torch.equal(sparse_linear(features, W), XW)
    scale = torch.tensor([1.0, 0.5, 2.0])
    assert torch.equal(sparse_linear(features, W, scale), torch.tensor([[17.0, 170.0], [0.0, 0.0], [3.0, 30.0]]))


def test_trailing_empty_sparse_rows_still_get_a_row():
    features = doc_features(sp.csr_matrix(X[[0, 1, 1]]))
    assert torch.equal(sparse_linear(features, W), torch.tensor([[9.0, 90.0], [0.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("row", [X[2], torch.from_numpy(X[2])], ids=["ndarray", "tensor"])
def test_one_document_as_a_vector_is_one_row(row):
    features = doc_features(row)
    assert (features.n_rows, features.n_features) == (1, 3)
    assert torch.equal(sparse_linear(features, W), XW[2:])


def test_three_dimensional_array_is_refused():
    with pytest.raises(ValueError, match="must be 2-D"):
        doc_features(np.zeros((2, 2, 2)))


def test_normalization_z_scores_dense_and_leaves_sparse_alone():
    shift, scale = input_normalization(np.array([[1.0, 5.0], [5.0, 5.0]]))
    np.testing.assert_array_equal(shift, [3.0, 5.0])
    np.testing.assert_array_equal(scale, [0.5, 1.0])  # std 2; a constant column keeps scale 1
    shift, scale = input_normalization(sp.csr_matrix(np.array([[1.0, 0.0], [3.0, 0.0]])))
    np.testing.assert_array_equal(shift, [0.0, 0.0])
    np.testing.assert_array_equal(scale, [1.0, 1.0])

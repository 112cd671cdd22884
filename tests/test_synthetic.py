"""Synthetic label spaces: shapes, seeded determinism, power-law frequencies, learnability."""

import numpy as np
import pytest
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.config import Config
from labelchain.agents.training import train_epochs
from labelchain.envs.data.synthetic import hidden_paths, make_synthetic
from labelchain.envs.metrics import precision_at_k


def test_shapes_name_and_normalised_rows():
    data = make_synthetic(500, seed=3, n_train=300, n_test=80, n_features=700)
    assert data.name == "synthetic-L500-s3" and data.source.startswith("synthetic")
    assert data.train.X.shape == (300, 700) and data.test.X.shape == (80, 700)
    assert data.train.Y.shape == (300, 500) and data.n_labels == 500
    assert data.train.X.dtype == np.float32 and data.train.Y.dtype == bool
    norms = np.sqrt(np.asarray(data.train.X.multiply(data.train.X).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    counts = np.diff(data.train.Y.indptr)
    assert counts.min() >= 1 and 2.0 < counts.mean() < 3.5  # 1 + Poisson(2), minus merged repeats
    defaults = make_synthetic(600, seed=0)
    assert (len(defaults.train), len(defaults.test), defaults.n_features) == (1200, 300, 1200)


def test_same_seed_same_data_other_seed_other_data():
    a, b = make_synthetic(300, seed=7), make_synthetic(300, seed=7)
    for split in ("train", "test"):
        assert (getattr(a, split).X != getattr(b, split).X).nnz == 0
        assert (getattr(a, split).Y != getattr(b, split).Y).nnz == 0
    c = make_synthetic(300, seed=8)
    assert (a.train.Y != c.train.Y).nnz > 0


def test_hidden_tree_paths_are_a_balanced_tree():
    paths = hidden_paths(300, branching=4, seed=0)  # depth ceil(log4 300) = 5
    assert paths.shape == (300, 5)
    assert len(np.unique(paths[:, 0])) == 300  # every label its own leaf
    for level in range(1, 5):  # each parent has at most 4 children among the level below
        _, children = np.unique(paths[:, level], return_counts=True)
        assert children.max() <= 4**level
    assert len(np.unique(paths[:, -1])) <= 4


def test_label_frequencies_follow_a_power_law():
    data = make_synthetic(2000, seed=0, n_train=20000, n_test=10)
    freq = np.sort(data.label_freq)[::-1].astype(float)
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(freq[:200]), 1)[0]
    assert -1.3 < slope < -0.7  # Zipf exponent 1 over the head
    top_share = freq[:20].sum() / freq.sum()  # 1% of labels carry ~ H_20 / H_2000 ~ 44% of pairs
    assert 0.35 < top_share < 0.55


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_labels"):
        make_synthetic(1)
    with pytest.raises(ValueError, match="keep"):
        make_synthetic(100, keep=0.0)


@pytest.mark.slow
def test_a_flat_chain_learns_it():
    """L = 200: a freq2rare chain after 8 epochs beats ranking the most frequent labels by 30 points P@1
    (measured: 0.892 vs 0.448)."""
    data = make_synthetic(200, seed=0, n_train=2000, n_test=500)
    torch.manual_seed(0)
    policy = ChainPolicy(data.n_features, data.n_labels, hidden_size=64, label_embed_size=16)
    config = Config.of(epochs=8, batch_size=64, lr=3e-3, seed=0, val_fraction=0.0)
    train_epochs(policy, data.train, config, progress=False)
    _, scores = predict(policy, data.test.X, batch_size=500)
    chain_p1 = precision_at_k(data.test.Y, scores, 1)
    popular = np.tile(data.label_freq.astype(float), (len(data.test), 1))
    popular_p1 = precision_at_k(data.test.Y, popular, 1)
    assert chain_p1 > popular_p1 + 0.30, (chain_p1, popular_p1)

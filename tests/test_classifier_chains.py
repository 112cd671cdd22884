"""The ensemble of classifier chains peer (agents.classifier_chains, registry name "ecc"): the chain-count
rule, constant labels, seeded orders and exact averaging on hand-made data, learning on emotions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.agents.classifier_chains import CHAIN_LABEL_BUDGET, EnsembleOfChains, LogisticOrConstant, chain_count
from labelchain.agents.peers import PEERS, tune_peer
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Split
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate


def test_chain_count_rule() -> None:
    assert CHAIN_LABEL_BUDGET == 2000
    assert [chain_count(L) for L in (6, 159, 200, 374, 983, 2001, 100_000)] == [10, 10, 10, 5, 2, 1, 1]
    assert chain_count(159, n_chains=3) == 3
    with pytest.raises(ValueError, match="n_chains must be >= 1"):
        chain_count(10, n_chains=0)


def test_logistic_or_constant_scores_a_one_class_label_by_its_constant() -> None:
    X = np.array([[0.0], [1.0], [2.0]])
    for y, p in (([0, 0, 0], 0.0), ([1, 1, 1], 1.0)):
        model = LogisticOrConstant().fit(X, np.array(y))
        assert model.predict_proba(X).tolist() == [[1 - p, p]] * 3
        assert model.predict(X).tolist() == [int(p)] * 3
    varied = LogisticOrConstant(C=10.0).fit(X, np.array([0, 0, 1]))
    assert varied.predict(X).tolist() == [0, 0, 1]


def toy_split(seed: int = 0, n: int = 60) -> Split:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, (X[:, 0] > 0) & (X[:, 1] > 0), np.zeros(n, bool), X[:, 2] > 0.5], axis=1)
    return Split(X, sp.csr_matrix(Y))


def test_ecc_uses_seeded_random_orders_and_averages_its_chains_exactly() -> None:
    train, test = toy_split(0), toy_split(1, n=20)
    ecc = EnsembleOfChains(C=1.0, n_chains=3, seed=7).fit(train)
    rng = np.random.default_rng(7)
    assert [chain.order_.tolist() for chain in ecc.chains] == [rng.permutation(4).tolist() for _ in range(3)]
    scores = ecc.scores(test.X)
    by_hand = sum(chain.predict_proba(ecc.scaler.transform(test.X)) for chain in ecc.chains) / 3
    np.testing.assert_allclose(scores, by_hand.astype(np.float32), rtol=1e-6)
    assert scores.dtype == np.float32 and (scores[:, 2] == 0).all()  # a label without positives
    np.testing.assert_array_equal(scores, EnsembleOfChains(C=1.0, n_chains=3, seed=7).fit(train).scores(test.X))
    other = EnsembleOfChains(C=1.0, n_chains=3, seed=8).fit(train)
    assert [c.order_.tolist() for c in other.chains] != [c.order_.tolist() for c in ecc.chains]
    # sparse features go through the same path
    sparse_train = Split(sp.csr_matrix(train.X), train.Y)
    assert EnsembleOfChains(n_chains=2).fit(sparse_train).scores(sp.csr_matrix(test.X)).shape == (20, 4)


@pytest.mark.needs_data
def test_tuned_ecc_beats_the_label_frequency_floor_on_emotions() -> None:
    assert "ecc" in PEERS
    ds = load_dataset("emotions")
    train, val = carve_validation(ds.train, 0.1, 0)
    ecc = tune_peer("ecc", train, val)
    floor = tune_peer("label_frequency", train, val)
    assert ecc.hyper["C"] in (0.1, 1.0, 10.0) and len(ecc.search) == 3
    got = evaluate(ds.test.Y, *ecc.predict(ds.test.X)[::-1])
    base = evaluate(ds.test.Y, *floor.predict(ds.test.X)[::-1])
    # measured: ECC P@1 0.70 / example F1 0.67 vs the floor's 0.48 / 0.49
    assert got["P@1"] >= base["P@1"] + 0.15
    assert got["example_f1"] >= base["example_f1"] + 0.15

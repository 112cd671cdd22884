"""Ensemble fusion on hand-made scores, with exact fused values."""
import numpy as np
import pytest
import scipy.sparse as sp

from agents.ensemble import Ensemble, mean_fusion, normalised, ranks, rrf_fusion, threshold_sets, vote

A = np.array([[3.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
B = np.array([[0.5, 0.9, -1.0], [1.0, 2.0, 3.0]])


def csr(rows):
    return sp.csr_matrix(np.array(rows, dtype=bool))


def test_normalised_and_ranks():
    assert np.allclose(normalised(A), [[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    assert np.array_equal(ranks(A), [[1, 3, 2], [1, 2, 3]])  # ties: lower label id first
    assert np.array_equal(ranks(B), [[2, 1, 3], [3, 2, 1]])


def test_mean_fusion_exact():
    expected = [[(1.0 + 1.5 / 1.9) / 2, (0.0 + 1.0) / 2, (0.5 + 0.0) / 2], [0.0, 0.25, 0.5]]
    assert np.allclose(mean_fusion([A, B]), expected)


def test_reciprocal_rank_fusion_exact():
    expected = [[1 / 2 + 1 / 3, 1 / 4 + 1 / 2, 1 / 3 + 1 / 4], [1 / 2 + 1 / 4, 1 / 3 + 1 / 3, 1 / 4 + 1 / 2]]
    assert np.allclose(rrf_fusion([A, B], k=1.0), expected)


def test_vote_and_threshold_sets():
    sets = [csr([[1, 0, 1]]), csr([[0, 1, 0]]), csr([[1, 0, 0]])]
    assert vote(sets, 2).toarray().tolist() == [[True, False, False]]
    assert vote(sets, 1).toarray().tolist() == [[True, True, True]]
    fused = np.array([[0.9, 0.4, 0.6], [0.1, 0.3, 0.2]])
    # the second row has nothing above 0.5 and keeps its top label
    assert threshold_sets(fused, 0.5).toarray().tolist() == [[True, False, True], [False, True, False]]


def test_predict_fuses_sets_and_scores():
    outputs = [(csr([[1, 0, 1], [1, 0, 0]]), A), (csr([[0, 1, 0], [0, 0, 1]]), B), (csr([[1, 0, 0], [0, 0, 1]]), A)]
    Y_pred, scores = Ensemble(fusion="rrf", rrf_k=1.0).predict(outputs)
    assert Y_pred.toarray().tolist() == [[True, False, False], [False, False, True]]  # majority = 2 of 3
    assert np.allclose(scores, rrf_fusion([A, B, A], k=1.0))
    Y_pred, scores = Ensemble(fusion="mean", set_rule="threshold", threshold=0.6).predict(outputs[:2])
    assert np.allclose(scores, mean_fusion([A, B]))
    assert Y_pred.toarray().tolist() == [[True, False, False], [False, False, True]]


def test_fit_picks_the_rule_that_wins_on_validation():
    # member 1 ranks well but over-predicts; member 2 predicts the right sets but ranks badly
    Y_val = csr([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    good_scores = np.eye(3) + 0.1
    bad_scores = np.roll(np.eye(3), 1, axis=1)
    outputs = [(csr(np.ones((3, 3))), good_scores), (Y_val, bad_scores), (Y_val, good_scores)]
    ensemble = Ensemble().fit(outputs, Y_val)
    Y_pred, _ = ensemble.predict(outputs)
    assert (Y_pred != Y_val).nnz == 0
    assert ensemble.validation["vote>=2/example_f1"] == pytest.approx(1.0)
    assert ensemble.validation["vote>=1/example_f1"] == pytest.approx(0.5)
    assert ensemble.fusion in ("mean", "rrf") and ensemble.validation[f"{ensemble.fusion}/nDCG@5"] == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="fusion"):
        Ensemble(fusion="max")
    with pytest.raises(ValueError, match="member 1"):
        Ensemble().predict([(csr([[1, 0, 0]]), A[:1]), (csr([[1, 0]]), np.zeros((1, 2)))])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble().predict([])

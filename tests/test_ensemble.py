"""Ensemble fusion on hand-made scores, with exact fused values."""

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.agents.ensemble import (
    Ensemble,
    mean_fusion,
    normalised,
    ranks,
    rrf_fusion,
    vote,
    weight_grid,
)
from labelchain.agents.set_rules import SetRule

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


def test_vote_and_weighted_mean():
    sets = [csr([[1, 0, 1]]), csr([[0, 1, 0]]), csr([[1, 0, 0]])]
    assert vote(sets, 2).toarray().tolist() == [[True, False, False]]
    assert vote(sets, 1).toarray().tolist() == [[True, True, True]]
    expected = [[0.75 * 1.0 + 0.25 * 1.5 / 1.9, 0.25, 0.75 * 0.5], [0.0, 0.125, 0.25]]
    assert np.allclose(mean_fusion([A, B], weights=(0.75, 0.25)), expected)


def test_weight_grid_covers_the_simplex_most_even_first():
    grid = weight_grid(2)
    assert grid[0] == (0.5, 0.5) and sorted(grid) == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    assert len(weight_grid(4)) == 35 and all(abs(sum(w) - 1) < 1e-12 for w in weight_grid(4))


def test_predict_fuses_sets_and_scores():
    outputs = [(csr([[1, 0, 1], [1, 0, 0]]), A), (csr([[0, 1, 0], [0, 0, 1]]), B), (csr([[1, 0, 0], [0, 0, 1]]), A)]
    Y_pred, scores = Ensemble(fusion="rrf", rrf_k=1.0).predict(outputs)
    assert Y_pred.toarray().tolist() == [[True, False, False], [False, False, True]]  # majority = 2 of 3
    assert np.allclose(scores, rrf_fusion([A, B, A], k=1.0))
    Y_pred, scores = Ensemble(fusion="mean", set_rule="rule", rule=SetRule("threshold", 0.6)).predict(outputs[:2])
    assert np.allclose(scores, mean_fusion([A, B]))
    # row 0 fused [0.89, 0.5, 0.25]; row 1 fused [0, 0.25, 0.5]: nothing reaches 0.6, the set stays empty
    assert Y_pred.toarray().tolist() == [[True, False, False], [False, False, False]]
    Y_pred, _ = Ensemble(set_rule="member", member=1).predict(outputs)
    assert Y_pred.toarray().tolist() == [[False, True, False], [False, False, True]]


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
    assert ensemble.fusion == "mean" and ensemble.validation["mean/nDCG@5"] == 1.0  # first of the ties


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="fusion"):
        Ensemble(fusion="max")
    with pytest.raises(ValueError, match="member 1"):
        Ensemble().predict([(csr([[1, 0, 0]]), A[:1]), (csr([[1, 0]]), np.zeros((1, 2)))])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble().predict([])


def test_non_sequential_member_without_a_set_and_a_kept_chain_set():
    """A peer that ranks well (scores only) beside a chain whose sets are right but ranking poor:
    the fit keeps the chain's set and takes the ranking from the peer's scores."""
    Y_val = csr([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    peer_scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.1, 0.3, 0.7], [0.6, 0.7, 0.1]])
    chain_scores = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [0.5, 1.0, 0.0], [0.0, 0.5, 1.0]])
    outputs = [(None, peer_scores), (Y_val, chain_scores)]
    ensemble = Ensemble().fit(outputs, Y_val, ranking_metric="P@1")
    assert ensemble.validation["mean/P@1"] < 1.0 and ensemble.validation["weighted/P@1"] == 1.0
    assert ensemble.fusion == "weighted" and ensemble.weights == (0.75, 0.25)  # the most even weights that win
    assert ensemble.set_rule == "vote" and ensemble.min_votes == 1  # the only set; member 1 ties later
    assert ensemble.validation["member1/example_f1"] == 1.0
    Y_pred, scores = ensemble.predict(outputs)
    assert (Y_pred != Y_val).nnz == 0
    assert np.allclose(scores, 0.75 * normalised(peer_scores) + 0.25 * normalised(chain_scores))
    assert ensemble.describe()["weights"] == [0.75, 0.25]
    plain = Ensemble().fit(outputs, Y_val, ranking_metric="P@1", search_weights=False)
    assert plain.fusion in ("mean", "rrf") and "weighted/P@1" not in plain.validation


def test_scores_only_members_get_their_set_from_the_tuned_rule():
    # per-row normalisation puts each row's best label at 1, so only a flat row can stay empty
    Y_val = csr([[1, 0, 0], [0, 0, 0], [0, 1, 1]])
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.1, 0.1], [0.1, 0.8, 0.7]])
    ensemble = Ensemble().fit([(None, scores), (None, scores)], Y_val)
    assert ensemble.set_rule == "rule" and not ensemble.rule.at_least_one  # the label-less doc stays empty
    Y_pred, _ = ensemble.predict([(None, scores), (None, scores)])
    assert (Y_pred != Y_val).nnz == 0
    with pytest.raises(ValueError, match="needs members with label sets"):
        Ensemble().predict([(None, scores)])
    with pytest.raises(ValueError, match="member 0 has no label set"):
        Ensemble(set_rule="member").predict([(None, scores)])

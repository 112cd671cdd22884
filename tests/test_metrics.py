"""Golden values, edge cases and scikit-learn agreement for envs.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, f1_score, ndcg_score
from sklearn.metrics import hamming_loss as sk_hamming_loss

from labelchain.envs.metrics import (
    HEADLINE,
    METRIC_NAMES,
    PROPENSITY_NAMES,
    RANKING_NAMES,
    SET_NAMES,
    evaluate,
    f1,
    hamming_loss,
    ndcg_at_k,
    precision_at_k,
    rare_label_f1,
    rare_labels,
    subset_accuracy,
)

# Tiny fixture: 3 documents, 5 labels; document 2 has no gold labels.
Y_TRUE = np.array(
    [
        [1, 0, 1, 0, 0],  # gold {0, 2}
        [0, 1, 0, 0, 0],  # gold {1}
        [0, 0, 0, 0, 0],  # gold {}
    ]
)
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.1, 0.0],  # ranking 0,1,2,3,4 -> hits 1,0,1,0,0
        [0.1, 0.2, 0.9, 0.3, 0.4],  # ranking 2,4,3,1,0 -> hits 0,0,0,1,0
        [0.5, 0.4, 0.3, 0.2, 0.1],  # no gold -> no hits
    ]
)
Y_PRED = np.array(
    [
        [1, 0, 0, 1, 0],  # pred {0, 3}
        [0, 1, 0, 0, 0],  # pred {1}
        [0, 0, 0, 0, 0],  # pred {}
    ]
)
D = lambda rank: 1.0 / math.log2(rank + 1)  # noqa: E731  (gain at 1-based rank)


# ----------------------------------------------------------------------------- golden values
def test_precision_golden():
    # P@1: d0 hit (1), d1 miss, d2 no gold -> (1 + 0 + 0) / 3
    assert precision_at_k(Y_TRUE, SCORES, 1) == pytest.approx(1 / 3)
    # P@3: d0 2/3, d1 0, d2 0 -> (2/3) / 3
    assert precision_at_k(Y_TRUE, SCORES, 3) == pytest.approx(2 / 9)
    # P@5: d0 2/5, d1 1/5 (hit at rank 4), d2 0 -> (3/5) / 3
    assert precision_at_k(Y_TRUE, SCORES, 5) == pytest.approx(1 / 5)


def test_ndcg_golden():
    # d0: hits at ranks 1,3 -> DCG = D(1) + D(3) = 1 + 1/2; IDCG (2 gold) = D(1) + D(2)
    d0 = (D(1) + D(3)) / (D(1) + D(2))
    # nDCG@3: d1 has no hit in top 3, d2 has no gold -> 0
    assert ndcg_at_k(Y_TRUE, SCORES, 3) == pytest.approx(d0 / 3)
    # nDCG@5: d1 hit at rank 4 -> D(4) / D(1); d2 -> 0
    assert ndcg_at_k(Y_TRUE, SCORES, 5) == pytest.approx((d0 + D(4)) / 3)
    assert ndcg_at_k(Y_TRUE, SCORES, 3) == pytest.approx(0.3065735963827292)


def test_set_metrics_golden():
    # example F1: d0 2*1/(2+2) = 0.5, d1 1, d2 empty vs empty = 1 -> 2.5 / 3
    assert f1(Y_TRUE, Y_PRED, "example") == pytest.approx(5 / 6)
    # micro F1: tp = 2, sum|P| = 3, sum|G| = 3 -> 4 / 6
    assert f1(Y_TRUE, Y_PRED, "micro") == pytest.approx(2 / 3)
    # macro F1 per label: L0 1, L1 1, L2 (gold only) 0, L3 (pred only) 0, L4 (neither) 0 -> 2 / 5
    assert f1(Y_TRUE, Y_PRED, "macro") == pytest.approx(2 / 5)
    # subset accuracy: d0 differs, d1 and d2 match -> 2 / 3
    assert subset_accuracy(Y_TRUE, Y_PRED) == pytest.approx(2 / 3)
    # hamming: d0 wrong on labels 2 and 3 -> 2 / (3 * 5)
    assert hamming_loss(Y_TRUE, Y_PRED) == pytest.approx(2 / 15)


def test_rare_label_f1_golden():
    label_freq = np.array([10, 1, 3, 0, 5])
    # Candidates = labels with test gold: 0 (freq 10), 1 (freq 1), 2 (freq 3). Label 3 has train
    # freq 0 but no test gold, so it is not a candidate. Per-label F1: L0 1, L1 1, L2 0.
    assert rare_labels(Y_TRUE, label_freq).tolist() == [1]  # ceil(3/3) = 1 label
    assert rare_label_f1(Y_TRUE, Y_PRED, label_freq) == pytest.approx(1.0)
    assert rare_labels(Y_TRUE, label_freq, fraction=0.5).tolist() == [1, 2]  # ceil(1.5) = 2
    assert rare_label_f1(Y_TRUE, Y_PRED, label_freq, fraction=0.5) == pytest.approx(0.5)
    assert rare_label_f1(Y_TRUE, Y_PRED, label_freq, fraction=1.0) == pytest.approx(2 / 3)


def test_rare_labels_frequency_ties_go_to_lower_label_id():
    # Labels 0, 1, 2 all have train freq 2: the single rare slot goes to label 0.
    label_freq = np.array([2, 2, 2, 0, 0])
    assert rare_labels(Y_TRUE, label_freq).tolist() == [0]
    assert rare_labels(Y_TRUE, np.array([2, 2, 1, 0, 0])).tolist() == [2]


def test_rare_f1_is_zero_without_any_test_gold():
    empty = np.zeros((2, 3), dtype=int)
    assert rare_label_f1(empty, empty, np.array([1, 2, 3])) == 0.0


# ----------------------------------------------------------------------------- edge cases
def test_ties_break_to_lower_label_id():
    gold_first = np.array([[1, 0, 0, 0]])
    gold_second = np.array([[0, 1, 0, 0]])
    flat = np.full((1, 4), 0.5)
    assert precision_at_k(gold_first, flat, 1) == 1.0  # label 0 wins the 4-way tie
    assert precision_at_k(gold_second, flat, 1) == 0.0
    # Tie at the top-k boundary: label 1 is in; labels 2, 3, 4 tie for the last slot -> label 2.
    scores = np.array([[0.1, 0.9, 0.5, 0.5, 0.5]])
    assert precision_at_k(np.array([[0, 0, 1, 0, 0]]), scores, 2) == pytest.approx(0.5)
    assert precision_at_k(np.array([[0, 0, 0, 1, 0]]), scores, 2) == 0.0
    # Ties also order ranks inside the top k: ranking is 2, 0, 1 -> gold label 1 at rank 3.
    assert ndcg_at_k(np.array([[0, 1, 0]]), np.array([[0.5, 0.5, 0.9]]), 3) == pytest.approx(D(3))


def _reference_ranking(scores: np.ndarray, k: int) -> np.ndarray:
    """Full sort by (-score, label id): the definition the fast selection must reproduce."""
    label_ids = np.arange(scores.shape[1])
    return np.array([np.lexsort((label_ids, -row))[:k] for row in scores])


@pytest.mark.parametrize("k", [1, 3, 5, 7, 30, 40])
def test_heavy_ties_match_reference_sort(k):
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 3, size=(200, 30)).astype(float)  # many ties everywhere
    gold = rng.random((200, 30)) < 0.2
    ranked = _reference_ranking(scores, k)
    hits = np.take_along_axis(gold, ranked, axis=1)
    expected_p = (hits.sum(axis=1) / k).mean()
    assert precision_at_k(gold, scores, k) == pytest.approx(expected_p)
    disc = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))
    ideal = np.array([disc[: min(k, g)].sum() for g in gold.sum(axis=1)])
    dcg = hits @ disc
    expected_ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0).mean()
    assert ndcg_at_k(gold, scores, k) == pytest.approx(expected_ndcg)


def test_k_larger_than_label_count_still_divides_by_k():
    gold = np.array([[1, 1, 0]])
    scores = np.array([[0.3, 0.2, 0.1]])
    # All 3 labels selected, 2 hits, divided by k = 5.
    assert precision_at_k(gold, scores, 5) == pytest.approx(2 / 5)
    # Both gold labels at ranks 1, 2 = ideal for min(5, 2) = 2 gold labels.
    assert ndcg_at_k(gold, scores, 5) == pytest.approx(1.0)
    assert set(evaluate(gold, scores=scores)) == set(RANKING_NAMES)  # k=5 > L=3 is fine


def test_documents_without_gold_count_as_zero_for_ranking():
    gold = np.array([[1, 0], [0, 0]])
    scores = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert precision_at_k(gold, scores, 1) == pytest.approx(0.5)
    assert ndcg_at_k(gold, scores, 2) == pytest.approx(0.5)


def test_all_empty_gold_and_prediction():
    empty = np.zeros((2, 3), dtype=bool)
    assert f1(empty, empty, "example") == 1.0  # empty vs empty is a perfect document
    assert f1(empty, empty, "micro") == 0.0  # label-level 0/0 = 0
    assert f1(empty, empty, "macro") == 0.0
    assert subset_accuracy(empty, empty) == 1.0
    assert hamming_loss(empty, empty) == 0.0
    assert precision_at_k(empty, np.ones((2, 3)), 1) == 0.0
    assert ndcg_at_k(empty, np.ones((2, 3)), 3) == 0.0


def test_empty_prediction_against_nonempty_gold_scores_zero():
    assert f1(np.array([[1, 0]]), np.array([[0, 0]]), "example") == 0.0
    assert f1(np.array([[0, 0]]), np.array([[0, 1]]), "example") == 0.0


def test_input_formats_agree_and_stored_zeros_are_not_gold():
    expected = evaluate(Y_TRUE, SCORES, Y_PRED, np.array([10, 1, 3, 0, 5]))
    for convert in (lambda a: a.astype(bool), sp.csr_matrix, sp.csc_matrix, sp.csr_array):
        got = evaluate(convert(Y_TRUE), SCORES, convert(Y_PRED), np.array([10, 1, 3, 0, 5]))
        assert got == pytest.approx(expected)
    # A CSR with an explicitly stored 0 at (2, 4) must behave like Y_TRUE and stay unmodified.
    rows, cols = np.nonzero(Y_TRUE)
    with_zero = sp.csr_matrix((np.r_[np.ones(rows.size), 0.0], (np.r_[rows, 2], np.r_[cols, 4])), shape=Y_TRUE.shape)
    assert with_zero.nnz == 4
    assert evaluate(with_zero, SCORES, with_zero) == pytest.approx(evaluate(Y_TRUE, SCORES, Y_TRUE))
    assert with_zero.nnz == 4


def test_same_input_gives_same_result():
    assert evaluate(Y_TRUE, SCORES, Y_PRED) == evaluate(Y_TRUE, SCORES.copy(), Y_PRED.copy())


# ----------------------------------------------------------------------------- evaluate()
def test_evaluate_keys_and_order():
    freq = np.array([10, 1, 3, 0, 5])
    assert list(evaluate(Y_TRUE, scores=SCORES)) == list(RANKING_NAMES)
    assert list(evaluate(Y_TRUE, Y_pred=Y_PRED)) == list(SET_NAMES)
    assert list(evaluate(Y_TRUE, scores=SCORES, label_freq=freq)) == list(RANKING_NAMES)
    full = evaluate(Y_TRUE, SCORES, Y_PRED, freq)
    assert tuple(full) == tuple(n for n in METRIC_NAMES if n not in PROPENSITY_NAMES)  # no n_train
    assert set(HEADLINE) <= set(METRIC_NAMES)
    assert full["P@3"] == precision_at_k(Y_TRUE, SCORES, 3)
    assert full["nDCG@5"] == ndcg_at_k(Y_TRUE, SCORES, 5)
    assert full["macro_f1"] == f1(Y_TRUE, Y_PRED, "macro")
    assert full["hamming_loss"] == pytest.approx(2 / 15)
    assert full["rare_f1"] == rare_label_f1(Y_TRUE, Y_PRED, freq)
    assert all(type(v) is float for v in full.values())


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bad_k", [0, -1, 2.5, True, "3"])
def test_bad_k_raises(bad_k):
    with pytest.raises(ValueError, match="k must"):
        precision_at_k(Y_TRUE, SCORES, bad_k)
    with pytest.raises(ValueError, match="k must"):
        ndcg_at_k(Y_TRUE, SCORES, bad_k)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="average"):
        f1(Y_TRUE, Y_PRED, "weighted")
    with pytest.raises(ValueError, match="scores"):
        precision_at_k(Y_TRUE, SCORES[:, :4], 1)
    with pytest.raises(ValueError, match="scores"):
        ndcg_at_k(Y_TRUE, np.where(SCORES > 0.5, np.nan, SCORES), 1)
    with pytest.raises(ValueError, match="Y_pred"):
        f1(Y_TRUE, Y_PRED[:2], "micro")
    with pytest.raises(ValueError, match="Y_pred"):
        hamming_loss(Y_TRUE, Y_PRED * 2)
    with pytest.raises(ValueError, match="Y_true"):
        subset_accuracy(Y_TRUE[0], Y_PRED[0])
    with pytest.raises(ValueError, match="Y_true"):
        evaluate(np.zeros((0, 5)), scores=np.zeros((0, 5)))
    with pytest.raises(ValueError, match="label_freq"):
        rare_label_f1(Y_TRUE, Y_PRED, np.array([1, 2]))
    with pytest.raises(ValueError, match="label_freq"):
        rare_label_f1(Y_TRUE, Y_PRED, np.array([1, 2, -3, 0, 1]))
    for bad_fraction in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="fraction"):
            rare_label_f1(Y_TRUE, Y_PRED, np.ones(5), fraction=bad_fraction)
    with pytest.raises(ValueError, match="scores, Y_pred"):
        evaluate(Y_TRUE)


# ----------------------------------------------------------------------------- scikit-learn agreement
def _random_case(seed: int, n: int = 300, n_labels: int = 12):
    rng = np.random.default_rng(seed)
    gold = rng.random((n, n_labels)) < 0.2
    gold[:20] = False  # some documents without gold labels
    pred = rng.random((n, n_labels)) < 0.25
    pred[10:30] = False  # empty predictions, some against empty gold
    pred[:, 0] = False
    gold[:, 0] = False  # a label with neither gold nor prediction
    scores = rng.random((n, n_labels))  # continuous: no ties, where sklearn's nDCG coincides
    return gold, pred, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed):
    gold, pred, scores = _random_case(seed)
    ours = evaluate(sp.csr_matrix(gold), scores, sp.csr_matrix(pred))
    yt, yp = gold.astype(int), pred.astype(int)
    # zero_division: 1 for samples (empty vs empty = 1), 0 for label-level averages.
    for average, sk_average, zero_division in [
        ("example", "samples", 1.0),
        ("micro", "micro", 0.0),
        ("macro", "macro", 0.0),
    ]:
        expected = f1_score(yt, yp, average=sk_average, zero_division=zero_division)
        assert ours[f"{average}_f1"] == pytest.approx(expected)
    assert ours["subset_accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert ours["hamming_loss"] == pytest.approx(sk_hamming_loss(yt, yp))
    for k in (3, 5):
        assert ours[f"nDCG@{k}"] == pytest.approx(ndcg_score(yt, scores, k=k))

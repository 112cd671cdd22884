"""Golden values and an independent cross-check for the propensity-scored metrics (PSP@k, PSnDCG@k)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.metrics import PROPENSITY_NAMES, evaluate
from labelchain.envs.tail_metrics import propensity, psndcg_at_k, psp_at_k

# 3 documents, 4 labels; inverse propensities 2, 4, 1, 5 so the sums stay readable.
PROP = np.array([0.5, 0.25, 1.0, 0.2])
GOLD = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
SCORES = np.array(
    [
        [0.9, 0.5, 0.7, 0.1],  # ranking 0, 2, 1, 3 -> hits at ranks 1 (1/p=2) and 3 (1/p=4)
        [0.1, 0.2, 0.3, 0.9],  # ranking 3, ... -> hit at rank 1 (1/p=5)
        [0.4, 0.3, 0.2, 0.1],  # no gold
    ]
)


def D(rank: int) -> float:
    """Discount at 1-based rank."""
    return 1.0 / math.log2(rank + 1)


def test_propensity_formula_by_hand():
    n, a, b = 100, 0.55, 1.5
    c = (math.log(100) - 1) * 2.5**0.55
    expected = [1 / (1 + c * (count + b) ** -a) for count in (0, 10, 100)]
    got = propensity(np.array([0, 10, 100]), n)
    assert got == pytest.approx(expected)
    assert np.all(np.diff(got) > 0) and np.all((got > 0) & (got < 1))  # rarer label, smaller p
    assert propensity(np.array([3]), 50, a=0.6, b=2.6) == pytest.approx(
        1 / (1 + (math.log(50) - 1) * 3.6**0.6 * 5.6**-0.6)
    )


def test_psp_golden_unnormalised():
    # d0: P@1 gain 2; P@3 gains 2 + 4 over 3. d1: 5, then 5/3. d2: 0.
    assert psp_at_k(GOLD, SCORES, 1, PROP) == pytest.approx((2 + 5 + 0) / 3)
    assert psp_at_k(GOLD, SCORES, 3, PROP) == pytest.approx((6 / 3 + 5 / 3 + 0) / 3)


def test_psp_golden_normalised():
    # d0 best top-1 = 4 (label 1): 2/4; best top-3 = 4 + 2: 6/6. d1: 5/5 both. d2: 0.
    assert psp_at_k(GOLD, SCORES, 1, PROP, normalized=True) == pytest.approx((0.5 + 1 + 0) / 3)
    assert psp_at_k(GOLD, SCORES, 3, PROP, normalized=True) == pytest.approx((1 + 1 + 0) / 3)


def test_psndcg_golden_both_forms():
    dcg0 = 2 * D(1) + 4 * D(3)  # = 4
    # Paper form: divided by the binary ideal DCG of min(3, |gold|) hits.
    expected = (dcg0 / (D(1) + D(2)) + 5 / D(1) + 0) / 3
    assert psndcg_at_k(GOLD, SCORES, 3, PROP) == pytest.approx(expected)
    # Normalised: divided by the best propensity-weighted DCG (label 1 first, then label 0).
    expected_norm = (dcg0 / (4 * D(1) + 2 * D(2)) + 1 + 0) / 3
    assert psndcg_at_k(GOLD, SCORES, 3, PROP, normalized=True) == pytest.approx(expected_norm)
    # k = 1: d0 gain 2 over binary ideal 1 (paper) or over 4 (normalised).
    assert psndcg_at_k(GOLD, SCORES, 1, PROP) == pytest.approx((2 + 5) / 3)
    assert psndcg_at_k(GOLD, SCORES, 1, PROP, normalized=True) == pytest.approx((0.5 + 1) / 3)


def test_k_larger_than_labels_and_ties():
    gold = np.array([[0, 1, 1]])
    prop = np.array([0.5, 0.5, 0.25])
    tied = np.zeros((1, 3))  # ties go to the lower label id: ranking 0, 1, 2
    assert psp_at_k(gold, tied, 1, prop) == 0.0
    assert psp_at_k(gold, tied, 2, prop) == pytest.approx(2 / 2)
    assert psp_at_k(gold, tied, 5, prop) == pytest.approx((2 + 4) / 5)  # still divided by k
    assert psp_at_k(gold, tied, 5, prop, normalized=True) == pytest.approx(1.0)
    assert psndcg_at_k(gold, tied, 5, prop, normalized=True) == pytest.approx(
        (2 * D(2) + 4 * D(3)) / (4 * D(1) + 2 * D(2))
    )


def _reference(gold: np.ndarray, scores: np.ndarray, prop: np.ndarray, k: int, normalized: bool):
    """Straightforward per-document loops, written independently of envs.metrics."""
    psp, psndcg = [], []
    for g, s in zip(gold, scores):
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))[:k]
        gains = [(1.0 / prop[j]) if g[j] else 0.0 for j in order]
        dcg = sum(gain / math.log2(r + 2) for r, gain in enumerate(gains))
        best = sorted((1.0 / prop[j] for j in np.flatnonzero(g)), reverse=True)[:k]
        if not best:
            psp.append(0.0)
            psndcg.append(0.0)
        elif normalized:
            psp.append(sum(gains) / sum(best))
            psndcg.append(dcg / sum(v / math.log2(r + 2) for r, v in enumerate(best)))
        else:
            psp.append(sum(gains) / k)
            psndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(best)))))
    return float(np.mean(psp)), float(np.mean(psndcg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    n, n_labels = 200, 15
    gold = rng.random((n, n_labels)) < 0.2
    gold[:10] = False
    scores = rng.integers(0, 6, size=(n, n_labels)).astype(float)  # many ties
    freq = rng.integers(0, 40, size=n_labels)
    prop = propensity(freq, 300)
    for k in (1, 3, 5, 20):
        for normalized in (False, True):
            psp, psndcg = _reference(gold, scores, prop, k, normalized)
            assert psp_at_k(sp.csr_matrix(gold), scores, k, prop, normalized) == pytest.approx(psp)
            assert psndcg_at_k(gold, scores, k, prop, normalized) == pytest.approx(psndcg)
            if normalized:
                assert 0.0 <= psp <= 1.0 and 0.0 <= psndcg <= 1.0
    full = evaluate(gold, scores, gold, label_freq=freq, n_train=300)
    assert [name for name in full if name.startswith("PS")] == list(PROPENSITY_NAMES)
    for k in (1, 3, 5):
        assert full[f"PSP@{k}"] == psp_at_k(gold, scores, k, prop)
    for k in (3, 5):
        assert full[f"PSnDCG@{k}"] == psndcg_at_k(gold, scores, k, prop)


def test_evaluate_without_n_train_has_no_propensity_keys():
    freq = np.array([5, 1, 0, 2])
    keys = set(evaluate(GOLD, SCORES, label_freq=freq))
    assert not keys & set(PROPENSITY_NAMES)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="n_train"):
        propensity(np.array([1, 0]), 2)  # ln 2 < 1: C would be negative
    with pytest.raises(ValueError, match="above n_train"):
        propensity(np.array([11, 0]), 10)
    with pytest.raises(ValueError, match="label_freq"):
        propensity(np.array([1, -1]), 10)
    with pytest.raises(ValueError, match="positive"):
        propensity(np.array([1, 1]), 10, a=0.0)
    with pytest.raises(ValueError, match="propensities"):
        psp_at_k(GOLD, SCORES, 1, PROP[:3])
    with pytest.raises(ValueError, match="propensities"):
        psndcg_at_k(GOLD, SCORES, 1, np.array([0.5, 0.0, 1.0, 0.2]))
    with pytest.raises(ValueError, match="label_freq"):
        evaluate(GOLD, SCORES, label_freq=np.array([1, 2]), n_train=10)

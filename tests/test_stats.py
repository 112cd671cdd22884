"""labelchain.envs.stats: the paired bootstrap (exact tiny cases, agreement with envs.metrics, coverage, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.metric_core import top_k_ranked
from labelchain.envs.metrics import evaluate
from labelchain.envs.stats import MethodPredictions, paired_bootstrap, resample_weights, stack_seeds


def test_one_document_per_seed_has_no_resampling_noise():
    """Two strata of one document each: every resample equals the data, so the interval is the point."""
    gold = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    ranked_a = np.array([[0, 1, 2, 3, 4, 5], [1, 0, 2, 3, 4, 5]])  # P@1 hits on both
    ranked_b = np.array([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]])  # hits on the first only
    out = paired_bootstrap(
        gold, MethodPredictions(ranked_a), MethodPredictions(ranked_b), np.array([7, 9]), ["P@1"], resamples=50
    )["P@1"]
    assert (out.difference, out.low, out.high) == (0.5, 0.5, 0.5)  # mean over seeds of (0, 1)
    assert (out.seeds_agreeing, out.seeds, out.resamples) == (1, 2, 50)
    assert out.text() == "+50.00 [+50.00, +50.00] (1/2 seeds)"


def test_micro_f1_is_recomputed_from_counts_not_averaged():
    """One stratum, two documents: micro F1 pools counts (2*1/(1+3) vs 2*2/(2+3)), no per-document mean."""
    gold = np.array([[1, 1, 0], [1, 0, 0]])
    a = MethodPredictions(pred=np.array([[1, 0, 0], [0, 0, 0]]))  # tp 1, |pred| 1, |gold| 3
    b = MethodPredictions(pred=np.array([[1, 1, 0], [0, 0, 0]]))  # tp 2, |pred| 2
    out = paired_bootstrap(gold, a, b, np.zeros(2), ["micro_f1", "example_f1"], resamples=400)
    assert out["micro_f1"].difference == pytest.approx(0.5 - 0.8)
    assert out["example_f1"].difference == pytest.approx((2 / 3 + 0) / 2 - (1 + 0) / 2)
    # a resample is doc0 twice (4/6 - 8/8, chance 1/4), doc1 twice (0 - 0, 1/4) or one each (-0.3, 1/2):
    # the 2.5% and 97.5% quantiles of 400 of them are the two extremes
    assert (out["micro_f1"].low, out["micro_f1"].high) == (pytest.approx(4 / 6 - 1), 0.0)


def test_resample_weights_draw_n_rows_each():
    w = resample_weights(5, 300, np.random.default_rng(0))
    assert w.shape == (300, 5) and (w.sum(axis=1) == 5).all() and w.min() >= 0
    assert abs(w.mean() - 1.0) < 0.05


def _random_case(seed: int, n: int = 120, n_labels: int = 12):
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, n_labels)) < 0.2).astype(int)
    sa, sb = rng.random((n, n_labels)) + 0.6 * gold, rng.random((n, n_labels)) + 0.4 * gold
    return gold, sa, sb, (sa > 1.0).astype(int), (sb > 1.0).astype(int), rng.integers(0, 30, n_labels)


def test_point_difference_is_the_mean_over_seeds_of_evaluate():
    by_seed = {}
    per_seed = []
    for s in (3, 4, 5):
        gold, sa, sb, pa, pb, freq = _random_case(s)
        freq = np.full(12, 10)
        by_seed[s] = (gold, MethodPredictions(top_k_ranked(sa, 8), pa), MethodPredictions(top_k_ranked(sb, 8), pb))
        per_seed.append((evaluate(gold, sa, pa, freq, 200), evaluate(gold, sb, pb, freq, 200)))
    gold, a, b, strata = stack_seeds(by_seed)
    out = paired_bootstrap(gold, a, b, strata, resamples=200, label_freq=np.full(12, 10), n_train=200)
    assert set(out) == set(per_seed[0][0])  # every metric evaluate gives, corpus ones included
    for metric, diff in out.items():
        expected = np.mean([ea[metric] - eb[metric] for ea, eb in per_seed])
        assert diff.difference == pytest.approx(expected, abs=1e-12), metric
        assert diff.low <= diff.high


def test_same_seed_same_interval_and_other_seed_other_draws():
    gold, sa, sb, pa, pb, _ = _random_case(1)
    a, b = MethodPredictions(top_k_ranked(sa, 5), pa), MethodPredictions(top_k_ranked(sb, 5), pb)
    strata = np.zeros(len(gold))
    one = paired_bootstrap(gold, a, b, strata, ["P@1", "macro_f1"], seed=5)
    again = paired_bootstrap(gold, a, b, strata, ["P@1", "macro_f1"], seed=5)
    other = paired_bootstrap(gold, a, b, strata, ["P@1", "macro_f1"], seed=6)
    assert one == again and one["macro_f1"].low != other["macro_f1"].low


def _coverage_case(rng: np.random.Generator, n: int):
    """4 labels, gold entries Bernoulli(0.3); a keeps a gold entry w.p. 0.8, b w.p. 0.7; both add a false
    positive w.p. 0.1. Ranking: a puts a gold label first w.p. 0.65, b w.p. 0.55 (shared noise: paired)."""
    gold = (rng.random((n, 4)) < 0.3).astype(int)
    u, fp = rng.random((n, 4)), rng.random((n, 4)) < 0.1
    pa = np.where(gold == 1, u < 0.8, fp).astype(int)
    pb = np.where(gold == 1, u < 0.7, fp).astype(int)
    gold[:, 0] = 1  # label 0 is always gold: P@1 is then a's / b's chance of ranking it first
    pa[:, 0] = pb[:, 0] = 1
    v = rng.random(n)
    ranked_a = np.where((v < 0.65)[:, None], [0, 1, 2, 3], [1, 0, 2, 3])
    ranked_b = np.where((v < 0.55)[:, None], [0, 1, 2, 3], [1, 0, 2, 3])
    return gold, MethodPredictions(ranked_a, pa), MethodPredictions(ranked_b, pb)


@pytest.mark.slow
def test_interval_covers_the_true_difference_about_95_percent():
    """200 simulated test sets (2 seeds x 150 documents): the 95% intervals of P@1 (a per-document
    metric, true difference 0.07) and micro F1 (a corpus metric, true difference from the expected
    counts) each cover the truth in 89-99.5% of them (binomial sd at 95% over 200 draws: 1.5 points)."""

    # label 0 always gold and predicted; labels 1-3 gold w.p. 0.3: E tp = 1 + 3*.3*p, E |pred| = E tp + 3*.7*.1
    def micro(p):
        tp = 1 + 3 * 0.3 * p
        return 2 * tp / (tp + 3 * 0.7 * 0.1 + 1 + 3 * 0.3)

    # P@1: label 0 first (a hit) w.p. 0.65 / 0.55, else label 1 first, a hit w.p. 0.3
    truth = {"P@1": (0.65 - 0.55) * (1 - 0.3), "micro_f1": micro(0.8) - micro(0.7)}
    rng = np.random.default_rng(2026)
    covered = {m: 0 for m in truth}
    sims = 200
    for i in range(sims):
        gold, a, b = _coverage_case(rng, 300)
        out = paired_bootstrap(gold, a, b, np.repeat([0, 1], 150), list(truth), resamples=400, seed=i)
        for m, t in truth.items():
            covered[m] += out[m].low <= t <= out[m].high
    for m in truth:
        assert 0.89 <= covered[m] / sims <= 0.995, (m, covered[m])


def test_bad_input_is_one_line_and_named():
    gold = np.eye(6, dtype=int)
    ok = MethodPredictions(np.tile(np.arange(6), (6, 1)), np.eye(6, dtype=int))
    short = MethodPredictions(np.tile(np.arange(6), (5, 1)))
    with pytest.raises(ValueError, match=r"^a.ranked must be \(n=6, K\) label ids, got shape \(5, 6\)$"):
        paired_bootstrap(gold, short, ok, np.zeros(6), ["P@1"])
    with pytest.raises(ValueError, match="b.pred has 5 rows but gold has 6"):
        paired_bootstrap(gold, ok, MethodPredictions(pred=np.eye(6, dtype=int)[:5]), np.zeros(6), ["micro_f1"])
    with pytest.raises(ValueError, match=r"strata has shape \(4,\) but gold has 6 rows"):
        paired_bootstrap(gold, ok, ok, np.zeros(4), ["P@1"])
    with pytest.raises(ValueError, match="P@1 needs ranked label ids for method b"):
        paired_bootstrap(gold, ok, MethodPredictions(pred=np.eye(6, dtype=int)), np.zeros(6), ["P@1"])
    with pytest.raises(ValueError, match="unknown metric 'P@2'"):
        paired_bootstrap(gold, ok, ok, np.zeros(6), ["P@2"])
    with pytest.raises(ValueError, match="rare_f1 needs label_freq"):
        paired_bootstrap(gold, ok, ok, np.zeros(6), ["rare_f1"])
    with pytest.raises(ValueError, match="seeds disagree on the number of labels"):
        stack_seeds({0: (np.eye(3), ok, ok), 1: (np.eye(4), ok, ok)})


def test_sparse_and_dense_inputs_agree():
    gold, sa, sb, pa, pb, _ = _random_case(9)
    dense = paired_bootstrap(gold, MethodPredictions(pred=pa), MethodPredictions(pred=pb), np.zeros(len(gold)))
    sparse = paired_bootstrap(
        sp.csr_matrix(gold),
        MethodPredictions(pred=sp.csr_matrix(pa)),
        MethodPredictions(pred=sp.csr_matrix(pb)),
        np.zeros(len(gold)),
    )
    assert dense == sparse and set(dense) == {"example_f1", "subset_accuracy", "hamming_loss", "micro_f1", "macro_f1"}


def test_from_scores_ranks_like_the_metrics_and_numpy_ints_are_accepted():
    gold, sa, sb, pa, pb, _ = _random_case(4)
    a = MethodPredictions.from_scores(sa, pa, k=6)
    assert (a.ranked == top_k_ranked(sa, 6)).all() and a.pred is pa
    b = MethodPredictions.from_scores(sb, pb)
    out = paired_bootstrap(gold, a, b, np.zeros(len(gold)), ["P@3", "micro_f1"], resamples=np.int64(50))
    assert out["P@3"].resamples == 50 and type(out["P@3"].resamples) is int
    assert out["P@3"].difference == pytest.approx(evaluate(gold, sa)["P@3"] - evaluate(gold, sb)["P@3"], abs=1e-12)
    with pytest.raises(ValueError, match=r"scores must be 2-D \(n, L\), got shape \(3,\)"):
        MethodPredictions.from_scores(np.zeros(3))

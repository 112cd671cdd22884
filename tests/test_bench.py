"""Benchmark helpers: the random action sampler of experiments.bench.bench_env."""

from __future__ import annotations

import numpy as np

from labelchain.experiments.bench.bench_env import RandomValidActions


def test_sampler_draws_only_valid_actions_and_stops_when_no_label_is_left():
    n_labels = 3
    masks = np.array(
        [
            [True, True, True, True],  # fresh document: anything
            [False, True, False, True],  # label 1 or STOP
            [False, False, False, True],  # every label emitted: only STOP
        ]
    )
    sampler = RandomValidActions(n_labels, p_stop=0.0, seed=0)
    for _ in range(50):
        actions = sampler(masks)
        assert masks[np.arange(3), actions].all()
        assert actions[2] == n_labels


def test_sampler_is_seeded():
    masks = np.ones((64, 6), dtype=bool)
    first = RandomValidActions(5, 0.2, seed=7)(masks)
    np.testing.assert_array_equal(first, RandomValidActions(5, 0.2, seed=7)(masks))
    assert (first == 5).any() and (first < 5).any()

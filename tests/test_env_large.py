"""LabelChain at large L: gold membership by sorted keys, masks only on request, same rewards."""

import tracemalloc

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from labelchain.envs import LabelChainEnv, LabelChainVectorEnv
from labelchain.envs.chain_task import make_task
from labelchain.envs.data.synthetic import make_synthetic

STOP = 4  # tiny_dataset has 4 labels


def test_is_gold_exact(tiny_dataset):
    task = make_task(tiny_dataset, "train")  # gold sets {0,2}, {1}, {}, {0,1,3}
    assert task.gold_keys.tolist() == [0, 2, 5, 12, 13, 15]  # doc * 4 + label, sorted
    docs = np.array([0, 0, 1, 2, 3, 3, 3])
    labels = np.array([2, 1, 1, 0, 3, 2, 0])
    assert task.is_gold(docs, labels).tolist() == [True, False, True, False, True, False, True]
    assert task.is_gold(np.array([3]), np.array([3])).tolist() == [True]  # the very last key


def test_is_gold_without_any_gold_label(tiny_dataset):
    task = make_task(tiny_dataset, "train")
    task.gold_keys = task.gold_keys[:0]
    assert task.is_gold(np.array([0, 3]), np.array([0, 3])).tolist() == [False, False]


def test_lazy_masks_equal_the_kept_masks(tiny_dataset):
    dense = LabelChainVectorEnv(3, tiny_dataset, doc_order="sequential")
    lazy = LabelChainVectorEnv(3, tiny_dataset, doc_order="sequential", dense_masks=False)
    dense.reset(seed=0)
    _, lazy_info = lazy.reset(seed=0)
    assert "action_mask" not in lazy_info and lazy.valid is None
    for actions in ([0, 1, 2], [0, 3, STOP], [2, 1, 0]):  # a repeat (0 in env 0) is a wasted step
        dense.step(np.array(actions))
        lazy.step(np.array(actions))
        np.testing.assert_array_equal(lazy.action_masks(), dense.action_masks())
    assert lazy.action_masks()[0].tolist() == [False, True, False, True, True]
    single = LabelChainEnv(tiny_dataset, dense_masks=False)
    _, info = single.reset(options={"doc_index": 0})
    single.step(2)
    assert "action_mask" not in info and single.action_masks().tolist() == [1, 1, 0, 1, 1]


@pytest.mark.parametrize("reward_mode", ["terminal", "delta"])
def test_sparse_vector_env_matches_dense_and_single_envs(reward_mode):
    """Synthetic L = 3,000: same documents, same random actions (repeats too), same rewards."""
    data = make_synthetic(3000, seed=1, n_train=40, n_test=10, n_features=300, mean_labels=6)
    task = make_task(data, "train", reward_mode=reward_mode)
    rng = np.random.default_rng(0)
    docs = np.arange(12)
    dense = LabelChainVectorEnv(len(docs), task, autoreset_mode=AutoresetMode.DISABLED)
    lazy = LabelChainVectorEnv(len(docs), task, autoreset_mode=AutoresetMode.DISABLED, dense_masks=False)
    singles = [LabelChainEnv(task, dense_masks=False) for _ in docs]
    dense.reset(options={"doc_indices": docs})
    lazy.reset(options={"doc_indices": docs})
    for env, doc in zip(singles, docs):
        env.reset(options={"doc_index": int(doc)})
    gold = data.train.label_lists()
    alive, total = np.ones(len(docs), dtype=bool), np.zeros(len(docs))
    while alive.any():
        # Half gold labels (so rewards move), some repeats of the previous action, some STOPs.
        picks = np.array([rng.choice(gold[d]) if len(gold[d]) else 0 for d in docs])
        actions = np.where(rng.random(len(docs)) < 0.5, picks, rng.integers(task.n_labels, size=len(docs)))
        actions[rng.random(len(docs)) < 0.1] = task.stop_action
        obs_d, rew_d, term_d, trunc_d, _ = dense.step(actions)
        obs_l, rew_l, term_l, trunc_l, _ = lazy.step(actions)
        np.testing.assert_array_equal(obs_l["history"], obs_d["history"])
        np.testing.assert_array_equal(rew_l, rew_d)
        np.testing.assert_array_equal(term_l | trunc_l, term_d | trunc_d)
        for i in np.flatnonzero(alive):
            _, reward, term, trunc, _ = singles[i].step(int(actions[i]))
            assert reward == pytest.approx(rew_l[i])
            total[i] += reward
            alive[i] = not (term or trunc)
    assert total.max() > 0  # hits happened, so the gold lookups were exercised


def test_step_memory_does_not_grow_with_labels():
    """At L = 100,000 a step of 64 documents allocates far less than one dense (64, L) mask."""
    data = make_synthetic(100_000, seed=0, n_train=300, n_test=10, n_features=200)
    task = make_task(data, "train")
    n = 64
    lazy = LabelChainVectorEnv(n, task, dense_masks=False)
    lazy.reset(seed=0)
    assert all(v.size < n * task.n_labels for v in vars(lazy).values() if isinstance(v, np.ndarray))
    rng = np.random.default_rng(0)
    tracemalloc.start()
    for _ in range(5):
        lazy.step(rng.integers(task.n_labels, size=n))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * (task.n_labels + 1) / 10  # a dense bool mask would be 6.4 MB; steps stay small
    assert lazy.action_masks().shape == (n, task.n_labels + 1)  # built only on request

"""LabelChainEnv and its native vector env: exact rewards, masks, caps, and one semantics for both."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import labelchain.envs as envs
from labelchain.envs import LabelChainEnv, LabelChainVectorEnv
from labelchain.envs.rewards import chain_quality

STOP = 4  # tiny_dataset has 4 labels


def run_episode(env: LabelChainEnv, doc: int, actions: list[int]):
    env.reset(seed=0, options={"doc_index": doc})
    rewards, flags = [], []
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        flags.append((terminated, truncated))
    return rewards, flags


def test_chain_quality_hand_computed():
    # P={0,1}, G={0,2}: tp=1 -> F1 = 2/4, Jaccard = 1/3, subset 0.
    assert chain_quality(1, 2, 2, "f1") == pytest.approx(0.5)
    assert chain_quality(1, 2, 2, "jaccard") == pytest.approx(1 / 3)
    assert chain_quality(1, 2, 2, "subset_accuracy") == 0.0
    # Empty prediction: 1 for an empty gold set, 0 otherwise.
    assert chain_quality(0, 0, 0, "f1") == 1.0 and chain_quality(0, 0, 3, "jaccard") == 0.0
    with pytest.raises(ValueError, match="reward"):
        chain_quality(0, 0, 0, "accuracy")


@pytest.mark.parametrize("reward, expected", [("f1", 0.8), ("jaccard", 2 / 3), ("subset_accuracy", 0.0)])
def test_terminal_reward_exact(tiny_dataset, reward, expected):
    # Doc 0 has gold {0, 2}; emit 0, 1, 2 then STOP: tp=2, |P|=3 -> F1 = 4/5, Jaccard = 2/3.
    env = LabelChainEnv(tiny_dataset, reward=reward, reward_mode="terminal")
    rewards, flags = run_episode(env, 0, [0, 1, 2, STOP])
    assert rewards == pytest.approx([0, 0, 0, expected])
    assert flags == [(False, False)] * 3 + [(True, False)]


def test_delta_rewards_sum_to_terminal(tiny_dataset):
    # F1 after each emission: {0}: 2/3, {0,1}: 2/4, {0,1,2}: 4/5; STOP changes nothing.
    env = LabelChainEnv(tiny_dataset, reward_mode="delta")
    rewards, _ = run_episode(env, 0, [0, 1, 2, STOP])
    assert rewards == pytest.approx([2 / 3, 0.5 - 2 / 3, 0.8 - 0.5, 0.0])
    assert sum(rewards) == pytest.approx(0.8)
    # Empty gold set, immediate STOP: the whole return (1) comes on that step.
    assert run_episode(env, 2, [STOP])[0] == [1.0]


def test_masked_action_is_a_wasted_step(tiny_dataset):
    env = LabelChainEnv(tiny_dataset, reward_mode="delta")
    env.reset(options={"doc_index": 1})
    env.step(1)
    assert env.action_masks().tolist() == [True, False, True, True, True]
    obs, reward, *_ = env.step(1)
    assert reward == 0.0 and obs["step"] == 2
    assert obs["history"].tolist()[:2] == [1, 4]  # second slot still empty (L = 4)


def test_truncation_at_step_cap(tiny_dataset):
    env = LabelChainEnv(tiny_dataset, max_steps=2, reward_mode="terminal")
    rewards, flags = run_episode(env, 1, [0, 1])  # gold {1}; P = {0, 1}: F1 = 2/3
    assert flags == [(False, False), (False, True)]
    assert rewards == pytest.approx([0.0, 2 / 3])


def test_default_cap_a_little_above_largest_train_set(tiny_dataset):
    env = LabelChainEnv(tiny_dataset)  # largest train set has 3 labels; L = 4 caps it at 4, + STOP
    assert env.task.max_steps == 5
    assert env.observation_space["history"].shape == (5,)


def test_bad_arguments_are_named(tiny_dataset):
    with pytest.raises(ValueError, match="reward_mode"):
        LabelChainEnv(tiny_dataset, reward_mode="sparse")
    with pytest.raises(ValueError, match="split"):
        LabelChainEnv(tiny_dataset, split="valid")
    env = LabelChainEnv(tiny_dataset)
    with pytest.raises(ValueError, match="doc_index"):
        env.reset(options={"doc_index": 99})
    env.reset()
    with pytest.raises(ValueError, match="action 7"):
        env.step(7)


def test_passes_gymnasium_and_sb3_checkers(tiny_dataset):
    gym_check_env(LabelChainEnv(tiny_dataset), skip_render_check=True)
    sb3_check_env(LabelChainEnv(tiny_dataset), warn=False)


def test_registered_id_builds_both_envs(tiny_dataset):
    single = gym.make(envs.ENV_ID, dataset=tiny_dataset, split="test")
    assert single.unwrapped.task.n_docs == 2
    vec = gym.make_vec(envs.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", dataset=tiny_dataset)
    assert isinstance(vec, LabelChainVectorEnv) and vec.num_envs == 3


def random_valid_actions(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    scores = rng.random(masks.shape) + masks  # valid actions score in [1, 2), masked in [0, 1)
    return scores.argmax(axis=1)


@pytest.mark.parametrize("reward_mode", ["terminal", "delta"])
@pytest.mark.parametrize("reward", ["f1", "jaccard", "subset_accuracy"])
def test_vector_env_matches_single_env(tiny_dataset, reward, reward_mode):
    """Same documents, same actions (including wasted repeats) -> same observations and rewards."""
    rng = np.random.default_rng(0)
    kwargs = dict(reward=reward, reward_mode=reward_mode, max_steps=4)
    docs = np.array([0, 1, 2, 3, 0, 3])
    vec = LabelChainVectorEnv(len(docs), tiny_dataset, autoreset_mode=AutoresetMode.DISABLED, **kwargs)
    singles = [LabelChainEnv(tiny_dataset, **kwargs) for _ in docs]
    vobs, vinfo = vec.reset(options={"doc_indices": docs})
    sobs = [env.reset(options={"doc_index": int(d)})[0] for env, d in zip(singles, docs)]
    alive = np.ones(len(docs), dtype=bool)
    while alive.any():
        for key in ("features", "history", "step"):
            np.testing.assert_array_equal(vobs[key][alive], np.stack([o[key] for o in sobs])[alive])
        # Actions ignore masks half the time, so wasted steps are compared too.
        actions = random_valid_actions(rng, vinfo["action_mask"] | (rng.random() < 0.5))
        vobs, vrew, vterm, vtrunc, vinfo = vec.step(actions)
        for i in np.flatnonzero(alive):
            sobs[i], reward, term, trunc, _ = singles[i].step(int(actions[i]))
            assert (vrew[i], vterm[i], vtrunc[i]) == (pytest.approx(reward), term, trunc)
            alive[i] = not (term or trunc)
    # With autoreset disabled, ended envs stay ended: actions ignored, nothing paid.
    _, vrew, vterm, vtrunc, _ = vec.step(np.zeros(len(docs), dtype=np.int64))
    assert not (vrew.any() or vterm.any() or vtrunc.any())


def test_vector_env_next_step_autoreset(tiny_dataset):
    vec = LabelChainVectorEnv(2, tiny_dataset, doc_order="sequential", reward_mode="terminal")
    obs, info = vec.reset(seed=1)
    assert info["doc_index"].tolist() == [0, 1]
    _, rewards, terminated, _, _ = vec.step(np.array([0, STOP]))
    assert terminated.tolist() == [False, True] and rewards[1] == 0.0  # doc 1 gold {1}, P = {}
    obs, rewards, terminated, truncated, info = vec.step(np.array([2, 3]))
    # Env 1 was reset this step: its action was ignored and it now holds the next document (2).
    assert info["doc_index"].tolist() == [0, 2] and rewards[1] == 0.0 and not terminated[1]
    assert obs["step"].tolist() == [2, 0] and info["action_mask"][1].all()
    _, rewards, terminated, _, _ = vec.step(np.array([STOP, STOP]))
    assert rewards.tolist() == [1.0, 1.0]  # doc 0: P = {0, 2} exact; doc 2: no gold, no labels


def test_vector_env_validates_actions(tiny_dataset):
    vec = LabelChainVectorEnv(2, tiny_dataset)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions\[1\]=9"):
        vec.step(np.array([0, 9]))
    with pytest.raises(ValueError, match="doc_indices"):
        vec.reset(options={"doc_indices": [0]})


def test_vector_env_copy_flag(tiny_dataset):
    """copy=False hands out the env's own buffers (overwritten in place); copy=True keeps old ones intact."""
    shared = LabelChainVectorEnv(2, tiny_dataset)
    first, info = shared.reset(seed=0)
    second, *_, info2 = shared.step(np.array([0, 1]))
    for key in ("features", "history", "step"):
        assert first[key] is second[key], key
    assert first["history"][:, 0].tolist() == [0, 1] and first["step"].tolist() == [1, 1]  # updated in place
    assert info["action_mask"] is info2["action_mask"] and not info["action_mask"][0, 0]
    fresh = LabelChainVectorEnv(2, tiny_dataset, copy=True)
    first, info = fresh.reset(seed=0)
    second, *_, info2 = fresh.step(np.array([0, 1]))
    assert first["history"][:, 0].tolist() == [4, 4] and first["step"].tolist() == [0, 0]  # as returned
    assert second["history"][:, 0].tolist() == [0, 1] and second["step"].tolist() == [1, 1]
    assert info["action_mask"].all() and not info2["action_mask"][0, 0]


def test_single_env_observations_are_fresh_arrays(tiny_dataset):
    env = LabelChainEnv(tiny_dataset)
    first, info = env.reset(options={"doc_index": 0})
    second, *_ = env.step(0)
    assert first["history"].tolist() == [4] * 5 and first["step"] == 0  # unchanged by the step
    assert second["history"].tolist()[:1] == [0] and info["action_mask"].all()


def test_stepping_an_ended_episode_is_an_error(tiny_dataset):
    env = LabelChainEnv(tiny_dataset, reward_mode="terminal", max_steps=2)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)  # before the first reset
    run_episode(env, 0, [STOP])
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)  # after termination: no more labels appended
    rewards, flags = run_episode(env, 1, [0, 1])  # truncated at the cap, paid once
    assert flags[-1] == (False, True) and rewards == pytest.approx([0.0, 2 / 3])
    with pytest.raises(gym.error.ResetNeeded):
        env.step(2)  # after truncation: the final reward is not paid again
    env.reset(options={"doc_index": 1})
    assert env.step(1)[1:3] == (0.0, False)  # a reset starts a new episode as usual


def test_vector_env_needs_a_reset_and_envs(tiny_dataset):
    vec = LabelChainVectorEnv(2, tiny_dataset)
    with pytest.raises(gym.error.ResetNeeded):
        vec.step(np.array([0, STOP]))
    with pytest.raises(gym.error.ResetNeeded, match="every sub-env"):
        vec.reset(options={"reset_mask": np.array([True, False])})
    vec.reset(options={"doc_indices": [0, 1]})
    _, rewards, terminated, _, _ = vec.step(np.array([0, 1]))
    _, rewards, terminated, _, _ = vec.step(np.array([2, STOP]))
    assert terminated.tolist() == [False, True] and rewards[1] == 0.0  # doc 1: gold {1}, emitted {1}: F1 1 in total
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
            LabelChainVectorEnv(bad, tiny_dataset)

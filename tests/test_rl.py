"""Returns, advantages and losses of agents.rl on hand-made episodes; rollouts agree with the env."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import sequence_log_probs
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.rearrangement import rearranged_target_matrix
from labelchain.agents.rl import (
    EpisodeCollector,
    actor_critic_loss,
    combined_loss,
    compute_advantages,
    discounted_returns,
    ppo_clip_loss,
    self_critical_baseline,
)
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.envs.chain_task import ChainTask
from labelchain.envs.rewards import chain_quality

# Two episodes: three steps (rewards 0.5, 0.3, -0.1) and one step (reward 1.0).
REWARDS = torch.tensor([[0.5, 0.3, -0.1, 0.0], [1.0, 0.0, 0.0, 0.0]])
VALID = torch.tensor([[True, True, True, False], [True, False, False, False]])


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def test_discounted_returns_exact():
    assert close(discounted_returns(REWARDS, VALID, 1.0), [[0.7, 0.2, -0.1, 0.0], [1.0, 0, 0, 0]])
    # gamma 0.5: G2 = -0.1, G1 = 0.3 - 0.05 = 0.25, G0 = 0.5 + 0.125 = 0.625
    assert close(discounted_returns(REWARDS, VALID, 0.5), [[0.625, 0.25, -0.1, 0.0], [1.0, 0, 0, 0]])
    # rewards after the end are ignored even if an env reported some
    noisy = REWARDS.clone()
    noisy[1, 2] = 5.0
    assert close(discounted_returns(noisy, VALID, 1.0), discounted_returns(REWARDS, VALID, 1.0))


def test_advantages_value_baseline_and_normalisation_exact():
    returns = discounted_returns(REWARDS, VALID, 1.0)
    values = torch.tensor([[0.4, 0.2, 0.0, 9.0], [0.6, 9.0, 9.0, 9.0]])
    adv = compute_advantages(returns, values, VALID)
    assert close(adv, [[0.3, 0.0, -0.1, 0.0], [0.4, 0, 0, 0]])
    # valid advantages 0.3, 0, -0.1, 0.4: mean 0.15, population std sqrt(0.0425)
    std = math.sqrt(((0.15) ** 2 + 0.15**2 + 0.25**2 + 0.25**2) / 4)
    expected = [[0.15 / std, -0.15 / std, -0.25 / std, 0.0], [0.25 / std, 0, 0, 0]]
    assert close(compute_advantages(returns, values, VALID, normalize=True), expected, tol=1e-5)
    assert close(compute_advantages(returns, None, VALID), returns)


def test_self_critical_advantage_is_sample_minus_greedy_return_at_every_step():
    greedy = torch.tensor([0.6, 0.25])
    baseline = self_critical_baseline(REWARDS, VALID, greedy)
    assert close(baseline, [[0.6, 0.1, -0.2, 0.0], [0.25, 0, 0, 0]])
    adv = compute_advantages(discounted_returns(REWARDS, VALID, 1.0), baseline, VALID)
    assert close(adv, [[0.1, 0.1, 0.1, 0.0], [0.75, 0, 0, 0]])


def test_actor_critic_loss_exact():
    log_probs = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-0.1, 0.0, 0.0, 0.0]], requires_grad=True)
    adv = torch.tensor([[0.3, 0.0, -0.1, 0.0], [0.4, 0, 0, 0]])
    values = torch.tensor([[0.4, 0.2, 0.0, 0.0], [0.6, 0, 0, 0]])
    returns = torch.tensor([[0.7, 0.2, -0.1, 0.0], [1.0, 0, 0, 0]])
    entropy = torch.tensor([[1.0, 0.5, 0.5, 7.0], [2.0, 7.0, 7.0, 7.0]])
    total, parts = actor_critic_loss(log_probs, adv, values, returns, entropy, VALID, value_coef=0.5, entropy_coef=0.1)
    policy = (0.3 * 1.0 + 0.0 - 0.1 * 0.5 + 0.4 * 0.1) / 4  # -(A logp) averaged over 4 valid steps
    value = (0.09 + 0.0 + 0.01 + 0.16) / 4
    ent = (1.0 + 0.5 + 0.5 + 2.0) / 4
    assert close(parts["policy"], policy) and close(parts["value"], value) and close(parts["entropy"], ent)
    assert close(total, policy + 0.5 * value - 0.1 * ent)
    total.backward()
    assert close(log_probs.grad, [[-0.3 / 4, 0.0, 0.1 / 4, 0.0], [-0.4 / 4, 0, 0, 0]])


def test_ppo_clipped_loss_exact_inside_and_outside_the_clip_range():
    ratios = torch.tensor([[1.1, 1.5, 0.5, 0.5, 1.5, 0.9, 50.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0]])
    valid = torch.tensor([[True] * 6 + [False]])  # the last step is padding
    old = torch.tensor([[-1.0] * 7])
    new = (old + ratios.log()).requires_grad_(True)
    loss, stats = ppo_clip_loss(new, old, adv, valid, clip=0.2)
    # per step: inside (-1.1), clipped A>0 (-1.2), clipped A<0 (0.8), unclipped because pessimistic
    # (-0.5 and 1.5), inside (0.9)
    assert close(loss, (-1.1 - 1.2 + 0.8 - 0.5 + 1.5 + 0.9) / 6, tol=1e-5)
    assert close(stats["clipfrac"], 4 / 6)
    r = ratios[0, :6]
    assert close(stats["approx_kl"], ((r - 1) - r.log()).mean(), tol=1e-5)
    loss.backward()
    # d/dlogp of -A r is -A r where unclipped, 0 where the clipped branch is the max
    assert close(new.grad, [[-1.1 / 6, 0.0, 0.0, -0.5 / 6, 1.5 / 6, 0.9 / 6, 0.0]], tol=1e-5)


def test_combined_loss_is_weighted_sum():
    assert close(combined_loss(torch.tensor(2.0), torch.tensor(4.0), 0.9), 0.9 * 2.0 + 0.1 * 4.0)
    with pytest.raises(ValueError, match="rl_weight"):
        combined_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)


@pytest.fixture
def small_task(tiny_dataset):
    return ChainTask(split=tiny_dataset.train, n_labels=4, max_steps=4, reward="f1", reward_mode="delta")


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return ChainPolicy(3, 4, hidden_size=16, label_embed_size=8, dropout=0.0).eval()


@pytest.mark.parametrize("reward_mode", ["delta", "terminal"])
def test_rollout_rewards_are_the_envs_and_log_probs_match_teacher_forcing(tiny_dataset, policy, reward_mode):
    task = ChainTask(split=tiny_dataset.train, n_labels=4, max_steps=4, reward="f1", reward_mode=reward_mode)
    collector = EpisodeCollector(task)
    rows = np.array([0, 1, 2, 3, 3, 0, 1, 2])
    episodes = collector.rollout(policy, rows, generator=torch.Generator().manual_seed(1))
    gold = tiny_dataset.train.Y[rows].toarray()
    for i, chain in enumerate(episodes.labels.numpy()):
        emitted = chain[chain >= 0]
        assert len(set(emitted)) == len(emitted)  # the env's mask forbids repeats
        quality = chain_quality(gold[i, emitted].sum(), len(emitted), gold[i].sum(), "f1")
        assert episodes.episode_returns[i].item() == pytest.approx(float(quality), abs=1e-6)
        n = int(episodes.valid[i].sum())
        assert n <= 4 and (n == 4 or episodes.actions[i, n - 1] == 4)  # ends at STOP or the cap
    logp, entropy, values = sequence_log_probs(policy, tiny_dataset.train.X[rows], episodes.actions)
    assert close(logp, episodes.log_probs, tol=1e-5)
    assert close(entropy, episodes.entropies, tol=1e-5)
    assert close(values, episodes.values, tol=1e-5)


def test_rollout_rejects_bad_rows(small_task, policy):
    with pytest.raises(ValueError, match="0..3"):
        EpisodeCollector(small_task).rollout(policy, np.array([0, 4]))


def test_combined_objective_on_a_fixed_batch_is_w_rl_plus_one_minus_w_tf(tiny_dataset, policy):
    config = LearnerConfig(seed=3, rl_weight=0.7)
    learner = make_learner("combined", policy, tiny_dataset.train, config)
    rows = np.array([0, 1, 3, 3])
    rng_before = learner.rng.bit_generator.state
    total, rl_loss, tf_loss, episodes, _ = learner.losses(rows)
    assert torch.allclose(total, 0.7 * rl_loss + 0.3 * tf_loss, atol=1e-7)
    # the teacher-forcing part is the rearrangement of exactly the sampled chains
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_before
    targets = rearranged_target_matrix(episodes.labels.numpy(), tiny_dataset.train.Y[rows], rng)
    assert torch.allclose(tf_loss, teacher_forcing_loss(policy, tiny_dataset.train.X[rows], targets), atol=1e-7)
    emitted_gold = [
        set(c[c >= 0]) & set(g) for c, g in zip(episodes.labels.numpy(), tiny_dataset.train.Y[rows].tolil().rows)
    ]
    for target, kept in zip(targets, emitted_gold):
        assert kept <= set(target[target >= 0])


def test_sparse_features_roll_out_like_dense(tiny_dataset, policy):
    dense_task = ChainTask(split=tiny_dataset.train, n_labels=4, max_steps=4)
    sparse_split = type(tiny_dataset.train)(sp.csr_matrix(tiny_dataset.train.X), tiny_dataset.train.Y)
    sparse_task = ChainTask(split=sparse_split, n_labels=4, max_steps=4)
    rows = np.array([3, 0, 1])
    a = EpisodeCollector(dense_task).rollout(policy, rows, sample=False)
    b = EpisodeCollector(sparse_task).rollout(policy, rows, sample=False)
    assert torch.equal(a.actions, b.actions) and close(a.log_probs, b.log_probs, tol=1e-5)

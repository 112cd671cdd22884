"""One interface over every way of training the chain policy, so a single script can drive them all.

`make_learner(name, policy, train, config)` returns a `Learner` whose `update(rows)` takes one
optimisation step on training documents `rows` and reports TensorBoard scalars. Learners:
  * fixed orderings (freq2rare, rare2freq, fixed_random, always_random): teacher forcing;
  * rearrange: teacher forcing on the policy's own sampled chain, corrected towards the gold set;
  * reinforce: REINFORCE / actor-critic on Monte-Carlo returns (baseline: value head, self-critical
    greedy reward, or none);
  * ppo: clipped-surrogate PPO, several epochs over minibatches of one rollout;
  * combined: w * actor-critic + (1 - w) * rearrangement teacher forcing on the same sampled chains.
Every learner reports `charts/episodic_return` (the reward of the chains it sampled, or of its
greedy chains for the fixed orderings) so that all learning curves share one axis.

RL learners run the policy without dropout (eval mode): the distribution the actions are sampled
from is then exactly the one that is differentiated, and PPO's ratios start at 1. What every learner
shares (`LearnerConfig`, the `Learner` base: optimizer, generators, state) is in agents/learner_base.py.
"""

from __future__ import annotations

import numpy as np
import torch

from labelchain.agents.decoding import sequence_log_probs
from labelchain.agents.learner_base import RL_LEARNERS, Learner, LearnerConfig
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.rearrangement import ordered_targets, rearranged_target_matrix
from labelchain.agents.rl import (
    Episodes,
    actor_critic_loss,
    combined_loss,
    compute_advantages,
    discounted_returns,
    masked_mean,
    ppo_clip_loss,
    self_critical_baseline,
)
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.envs.data.dataset import Split
from labelchain.envs.orderings import LabelOrdering

LEARNERS = ("freq2rare", "rare2freq", "fixed_random", "always_random", "rearrange", *RL_LEARNERS)
FIXED_ORDERINGS = LEARNERS[:4]
__all__ = ["FIXED_ORDERINGS", "LEARNERS", "make_learner"]


class FixedOrderLearner(Learner):
    """Teacher forcing on one fixed label ordering; charts report its greedy chains' reward."""

    def __init__(self, name: str, policy: ChainPolicy, train: Split, config: LearnerConfig, label_freq) -> None:
        super().__init__(policy, train, config)
        self.name = name
        self.ordering = LabelOrdering(name, label_freq, seed=config.seed)

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        targets = ordered_targets(self.train.Y[rows], self.ordering, self.lead_from)
        self.policy.train()
        loss = teacher_forcing_loss(self.policy, self._X(rows), targets, fused=self.config.fused)
        self._optimize(loss)
        scalars = {"losses/teacher_forcing": float(loss.detach()), "charts/label_steps": float((targets >= 0).sum())}
        if self.config.greedy_charts:  # about a fifth of an update at hidden 512 (bench_supervised --breakdown)
            scalars["charts/episodic_return"] = float(self._sample_chains(rows, greedy=True).episode_returns.mean())
        return scalars

    # always_random shuffles with the ordering's own generator: it is part of the state.
    def _extra_state(self) -> dict:
        return {"ordering_rng": self.ordering.rng.bit_generator.state}

    def _load_extra_state(self, state: dict) -> None:
        self.ordering.rng.bit_generator.state = state["ordering_rng"]


class RearrangeLearner(Learner):
    """Target rearrangement: teacher forcing on the policy's own sampled (or greedy) chain, corrected."""

    name = "rearrange"

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        chains = self._sample_chains(rows, greedy=self.config.greedy_rearrangement)
        targets = rearranged_target_matrix(chains.labels.cpu().numpy(), self.train.Y[rows], self.rng, self.lead_from)
        self.policy.train()
        loss = teacher_forcing_loss(self.policy, self._X(rows), targets, fused=self.config.fused)
        self._optimize(loss)
        return {
            "losses/teacher_forcing": float(loss.detach()),
            "charts/episodic_return": float(chains.episode_returns.mean()),
            "charts/label_steps": float((targets >= 0).sum()),
        }


class ReinforceLearner(Learner):
    """Actor-critic on Monte-Carlo returns of chains sampled through the environment."""

    name = "reinforce"
    differentiates_in_eval_mode = True

    def _rl_terms(self, rows: np.ndarray) -> tuple[Episodes, torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """Sample with gradients, then the actor-critic loss (and extra scalars)."""
        config = self.config
        self.policy.eval()
        episodes = self.collector.rollout(
            self.policy, rows, sample=True, temperature=config.temperature, generator=self.generator
        )
        returns = discounted_returns(episodes.rewards, episodes.valid, config.gamma)
        baseline, extra = self._baseline(rows, episodes)
        adv = compute_advantages(returns, baseline, episodes.valid, normalize=config.normalize_advantages)
        loss, parts = actor_critic_loss(
            episodes.log_probs,
            adv,
            episodes.values,
            returns,
            episodes.entropies,
            episodes.valid,
            value_coef=config.value_coef,
            entropy_coef=config.entropy_coef,
        )
        return episodes, loss, parts, extra

    def _baseline(self, rows: np.ndarray, episodes: Episodes) -> tuple[torch.Tensor | None, dict[str, float]]:
        if self.config.baseline == "value":
            return episodes.values.detach(), {}
        if self.config.baseline == "none":
            return None, {}
        greedy = self._sample_chains(rows, greedy=True)
        greedy_return = greedy.episode_returns
        baseline = self_critical_baseline(episodes.rewards, episodes.valid, greedy_return)
        return baseline, {"charts/greedy_return": float(greedy_return.mean())}

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        episodes, loss, parts, extra = self._rl_terms(rows)
        self._optimize(loss)
        return _scalars(episodes, loss, parts) | extra


class CombinedLearner(ReinforceLearner):
    """w * actor-critic + (1 - w) * teacher forcing on the rearranged targets of the same chains."""

    name = "combined"

    def losses(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Episodes, dict]:
        """(combined, RL, teacher-forcing) losses on one batch of sampled chains, before any step."""
        episodes, rl_loss, parts, extra = self._rl_terms(rows)
        sampled = episodes.labels.detach().cpu().numpy()
        targets = rearranged_target_matrix(sampled, self.train.Y[rows], self.rng, self.lead_from)
        tf_loss = teacher_forcing_loss(self.policy, self._X(rows), targets, fused=self.config.fused)
        total = combined_loss(rl_loss, tf_loss, self.config.rl_weight)
        return total, rl_loss, tf_loss, episodes, parts | extra

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        total, rl_loss, tf_loss, episodes, parts = self.losses(rows)
        self._optimize(total)
        scalars = _scalars(episodes, total, {k: v for k, v in parts.items() if isinstance(v, torch.Tensor)})
        scalars.update({k: v for k, v in parts.items() if not isinstance(v, torch.Tensor)})
        scalars["losses/rl"] = float(rl_loss.detach())
        scalars["losses/teacher_forcing"] = float(tf_loss.detach())
        return scalars


class PPOLearner(ReinforceLearner):
    """PPO: one rollout (no gradients), then `ppo_epochs` passes over `ppo_minibatches` of its documents.

    New log-probs come from one teacher-forced pass over the taken actions (`sequence_log_probs`),
    under the same masks the environment applied.
    """

    name = "ppo"

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        config = self.config
        self.policy.eval()
        with torch.no_grad():
            episodes = self.collector.rollout(
                self.policy, rows, sample=True, temperature=config.temperature, generator=self.generator
            )
            returns = discounted_returns(episodes.rewards, episodes.valid, config.gamma)
            baseline, extra = self._baseline(rows, episodes)
            adv = compute_advantages(returns, baseline, episodes.valid, normalize=config.normalize_advantages)
        X = self._X(rows)
        sums: dict[str, float] = {}
        n_minibatches = min(config.ppo_minibatches, len(rows))
        for _ in range(config.ppo_epochs):
            for part in np.array_split(self.rng.permutation(len(rows)), n_minibatches):
                part = np.sort(part)
                index = torch.from_numpy(part)
                valid = episodes.valid[index]
                new_logp, entropy, values = sequence_log_probs(
                    self.policy, X[part], episodes.actions[index], temperature=config.temperature
                )
                policy_loss, stats = ppo_clip_loss(
                    new_logp, episodes.log_probs[index], adv[index], valid, config.ppo_clip
                )
                value_loss = masked_mean((values - returns[index]) ** 2, valid)
                entropy_mean = masked_mean(entropy, valid)
                loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy_mean
                self._optimize(loss)
                for key, value in {
                    "total": loss,
                    "policy": policy_loss,
                    "value": value_loss,
                    "entropy": entropy_mean,
                    **stats,
                }.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
        count = config.ppo_epochs * n_minibatches
        scalars = {f"losses/{k}": v / count for k, v in sums.items()}
        scalars["charts/episodic_return"] = float(episodes.episode_returns.mean())
        scalars["charts/label_steps"] = float(episodes.n_steps)
        return scalars | extra


def _scalars(episodes: Episodes, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    scalars = {"losses/total": float(total.detach())}
    scalars.update({f"losses/{k}": float(v.detach()) for k, v in parts.items()})
    scalars["charts/episodic_return"] = float(episodes.episode_returns.mean())
    scalars["charts/label_steps"] = float(episodes.n_steps)
    return scalars


def make_learner(
    name: str, policy: ChainPolicy, train: Split, config: LearnerConfig, *, label_freq: np.ndarray | None = None
) -> Learner:
    """The learner `name` (one of LEARNERS) training `policy` in place on `train`.

    Warm start = pass a policy loaded from a checkpoint. label_freq (fixed orderings) defaults to
    the training split's label counts.
    """
    if name not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {name!r}")
    config.check()
    if train.Y.shape[1] != policy.n_labels or train.X.shape[1] not in policy.feature_widths:
        raise ValueError(
            f"policy is {' or '.join(map(str, policy.feature_widths))} features x {policy.n_labels} labels, "
            f"train split is {train.X.shape[1]} x {train.Y.shape[1]}"
        )
    if name in FIXED_ORDERINGS:
        freq = train.label_freq if label_freq is None else np.asarray(label_freq)
        if policy.mcg is not None and len(freq) == policy.mcg.n_labels:  # MCG: the clusters' counts follow
            freq = np.concatenate([freq, train.label_freq[policy.mcg.n_labels :]])
        return FixedOrderLearner(name, policy, train, config, freq)
    classes = {
        "rearrange": RearrangeLearner,
        "reinforce": ReinforceLearner,
        "ppo": PPOLearner,
        "combined": CombinedLearner,
    }
    return classes[name](policy, train, config)

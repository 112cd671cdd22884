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
from is then exactly the one that is differentiated, and PPO's ratios start at 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from agents.optim import clip_grad_norm, make_optimizer
from agents.policy import ChainPolicy
from agents.rearrangement import ordered_targets, rearranged_target_matrix
from agents.rl import (
    BASELINES,
    EpisodeCollector,
    Episodes,
    actor_critic_loss,
    combined_loss,
    compute_advantages,
    discounted_returns,
    masked_mean,
    ppo_clip_loss,
    self_critical_baseline,
)
from agents.decoding import sequence_log_probs
from agents.supervised import teacher_forcing_loss
from envs.chain_task import ChainTask, default_max_steps
from envs.data.dataset import Split
from envs.orderings import LabelOrdering
from envs.rewards import DEFAULT_REWARD_MODE, check_reward_args

LEARNERS = ("freq2rare", "rare2freq", "fixed_random", "always_random", "rearrange", "reinforce", "ppo", "combined")
FIXED_ORDERINGS = LEARNERS[:4]


@dataclass
class LearnerConfig:
    """Knobs shared by all learners; each learner reads the ones it needs.

    max_steps None = the environment's default cap (a little above the largest training label set).
    """

    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    reward: str = "f1"
    reward_mode: str = DEFAULT_REWARD_MODE
    baseline: str = "value"
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    gamma: float = 1.0
    ppo_epochs: int = 4
    ppo_clip: float = 0.2
    ppo_minibatches: int = 4
    rl_weight: float = 0.9
    temperature: float = 1.0
    max_steps: int | None = None
    grad_clip: float | None = 1.0
    greedy_rearrangement: bool = False
    normalize_advantages: bool = True
    weight_decay: float = 0.0
    greedy_charts: bool = True  # fixed orders: decode greedy chains each update for the return chart

    def check(self) -> None:
        check_reward_args(self.reward, self.reward_mode)
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.lr <= 0 or self.batch_size < 1 or self.temperature <= 0:
            raise ValueError(
                f"need lr > 0, batch_size >= 1, temperature > 0; got {self.lr}, {self.batch_size}, {self.temperature}"
            )
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.rl_weight <= 1.0:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= rl_weight <= 1; got {self.gamma}, {self.rl_weight}")
        if self.ppo_epochs < 1 or self.ppo_minibatches < 1 or self.ppo_clip <= 0:
            raise ValueError("need ppo_epochs >= 1, ppo_minibatches >= 1, ppo_clip > 0")


class Learner:
    """Base: owns the optimizer, the random generators and the episode collector over `train`."""

    differentiates_in_eval_mode = False  # see update()

    name: str = ""

    def __init__(self, policy: ChainPolicy, train: Split, config: LearnerConfig) -> None:
        self.policy, self.train, self.config = policy, train, config
        cap = config.max_steps
        if cap is None:
            cap = default_max_steps(train.max_labels_per_doc, policy.n_labels)
        self.task = ChainTask(
            split=train,
            n_labels=policy.n_labels,
            max_steps=int(cap),
            reward=config.reward,
            reward_mode=config.reward_mode,
            name="train",
            mcg=policy.mcg,  # MCG: cluster tokens are actions, the reward counts labels (agents.mcg)
        )
        self.lead_from = None if policy.mcg is None else policy.mcg.n_labels  # MCG targets: clusters first
        self.collector = EpisodeCollector(self.task)
        torch.manual_seed(config.seed)  # dropout draws from the global generator
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=policy.input_weight.device).manual_seed(config.seed)
        self.optimizer = make_optimizer(policy, config.lr, config.weight_decay)
        self.n_updates = 0
        self._rows = np.zeros(0, dtype=np.int64)  # the rows of the update in progress (for guidance_loss)
        self._guidance_losses: list[float] = []

    # ------------------------------------------------------------------ interface
    def update(self, rows: np.ndarray) -> dict[str, float]:
        """One optimisation step on training documents `rows`; returns TensorBoard scalars."""
        rows = self._check_rows(rows)
        self._rows, self._guidance_losses = rows, []
        # cuDNN's GRU has no backward pass in eval mode, where RL learners differentiate (no dropout,
        # so the sampled and the differentiated distributions are one): run them without cuDNN.
        with torch.backends.cudnn.flags(enabled=not self.differentiates_in_eval_mode):
            scalars = self._update(rows)
        if self._guidance_losses:
            scalars["losses/cluster_bce"] = float(np.mean(self._guidance_losses))
        self.n_updates += 1
        return scalars

    def state_dict(self) -> dict:
        """Everything needed for a bit-identical continuation (deep-copied, safe to keep in memory)."""
        return copy.deepcopy(
            {
                "name": self.name,
                "n_updates": self.n_updates,
                "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "numpy_rng": self.rng.bit_generator.state,
                "torch_generator": self.generator.get_state(),
                "torch_global_rng": torch.get_rng_state(),
                **self._extra_state(),
            }
        )

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; also restores torch's global RNG (dropout draws from it)."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for learner {state.get('name')!r}, this is {self.name!r}")
        state = copy.deepcopy(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.generator.set_state(state["torch_generator"])
        torch.set_rng_state(state["torch_global_rng"])
        self.n_updates = int(state["n_updates"])
        self._load_extra_state(state)

    # ------------------------------------------------------------------ helpers for subclasses
    def _update(self, rows: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            raise ValueError("update needs at least one training document")
        if rows.min() < 0 or rows.max() >= len(self.train):
            raise ValueError(
                f"rows must index the train split 0..{len(self.train) - 1}, got {rows.min()}..{rows.max()}"
            )
        return rows

    def _optimize(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        if self.policy.guidance is not None:  # BCL: the cluster head trains with every step (agents.guidance)
            epoch = 1 + self.n_updates * self.config.batch_size // len(self.train)
            guidance_loss = self.policy.guidance_loss(self._X(self._rows), epoch)
            self._guidance_losses.append(float(guidance_loss.detach()))
            loss = loss + guidance_loss
        loss.backward()
        norm = 0.0
        if self.config.grad_clip is not None:
            norm = clip_grad_norm(self.policy.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return norm

    def _sample_chains(self, rows: np.ndarray, *, greedy: bool) -> Episodes:
        """Chains of the current policy without gradients or dropout (for charts and rearrangement)."""
        self.policy.eval()
        with torch.no_grad():
            return self.collector.rollout(
                self.policy, rows, sample=not greedy, temperature=self.config.temperature, generator=self.generator
            )

    def _X(self, rows: np.ndarray):
        return self.train.X[rows]


class FixedOrderLearner(Learner):
    """Teacher forcing on one fixed label ordering; charts report its greedy chains' reward."""

    def __init__(self, name: str, policy: ChainPolicy, train: Split, config: LearnerConfig, label_freq) -> None:
        super().__init__(policy, train, config)
        self.name = name
        self.ordering = LabelOrdering(name, label_freq, seed=config.seed)

    def _update(self, rows: np.ndarray) -> dict[str, float]:
        targets = ordered_targets(self.train.Y[rows], self.ordering, self.lead_from)
        self.policy.train()
        loss = teacher_forcing_loss(self.policy, self._X(rows), targets)
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
        loss = teacher_forcing_loss(self.policy, self._X(rows), targets)
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
        tf_loss = teacher_forcing_loss(self.policy, self._X(rows), targets)
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

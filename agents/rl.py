"""Policy-gradient machinery for the chain policy: batched episodes through the environment, returns
and advantages, and the REINFORCE / actor-critic, PPO and combined (RL + target rearrangement) losses.

Episodes are collected through `LabelChainVectorEnv` (autoreset DISABLED, one sub-env per document of
the minibatch) so the rewards are exactly the environment's; the policy's incremental face and its output layer pick the
actions under the same masks as the env's (emitted labels; the output layer tracks them itself, so a
tree-factored policy never needs the env's dense (N, L + 1) mask). Every other function here is a pure function on (B, T) tensors:
row = document, column = step, `valid` marks the steps actually taken (False after the episode ended).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from labelchain.agents.fused import FusedSteps, fused_applies
from labelchain.agents.policy import START, ChainPolicy
from labelchain.envs.chain_task import ChainTask
from labelchain.envs.vector_env import LabelChainVectorEnv

BASELINES = ("value", "self_critical", "none")

DENSE_MASK_MAX_LABELS = 10_000


@dataclass
class Episodes:
    """One batch of finished episodes, all (B, T) and aligned by step.

    actions: the actions taken (STOP = L; -1 after the end); log_probs / entropies / values: of the
    (masked, tempered) distribution each action was drawn from, carrying gradients if the rollout
    did; rewards: the environment's rewards (0 after the end); valid: the step was taken;
    stop_id: the STOP action (= number of labels).
    """

    rows: np.ndarray
    actions: torch.Tensor
    log_probs: torch.Tensor
    entropies: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    valid: torch.Tensor
    stop_id: int

    @property
    def labels(self) -> torch.Tensor:
        """The emitted labels in order, -1 for STOP and padding (what rearrangement consumes)."""
        return self.actions.masked_fill(self.actions == self.stop_id, START)

    @property
    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each episode (B,): the chain's final quality in either reward mode."""
        return self.rewards.sum(dim=1)

    @property
    def n_steps(self) -> int:
        return int(self.valid.sum())


class EpisodeCollector:
    """Runs whole documents through a `LabelChainVectorEnv` built on `task` (one env per batch size)."""

    def __init__(self, task: ChainTask, *, fused: bool = True) -> None:
        self.task = task
        self.fused = fused  # eval-mode rollouts through agents.fused.FusedSteps (False: step_joint + choose)
        self._envs: dict[int, LabelChainVectorEnv] = {}

    def env(self, n: int) -> LabelChainVectorEnv:
        if n not in self._envs:
            # The collector never reads the env's masks: above DENSE_MASK_MAX_LABELS the env keeps no
            # (N, L + 1) arrays (gold labels by binary search, ~40x slower per step than the dense gather
            # at L = 983, so smaller label spaces keep the dense path).
            dense = self.task.n_labels <= DENSE_MASK_MAX_LABELS
            self._envs[n] = LabelChainVectorEnv(n, self.task, autoreset_mode=AutoresetMode.DISABLED, dense_masks=dense)
        return self._envs[n]

    def rollout(
        self,
        policy: ChainPolicy,
        rows: np.ndarray,
        *,
        sample: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Episodes:
        """Play documents `rows` (indices into the task's split) to the end, all together.

        Sampled (`sample=True`, from softmax(masked logits / temperature)) or greedy. Gradients flow
        into log_probs / entropies / values unless called under `torch.no_grad()`.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        task, batch = self.task, len(rows)
        if batch == 0:
            raise ValueError("rollout needs at least one document")
        if rows.min() < 0 or rows.max() >= task.n_docs:
            raise ValueError(f"document rows must lie in 0..{task.n_docs - 1}, got {rows.min()}..{rows.max()}")
        if policy.n_labels != task.n_labels:
            raise ValueError(f"policy has {policy.n_labels} labels, the task {task.n_labels}")
        env = self.env(batch)
        env.reset(options={"doc_indices": rows})
        state = policy.initial_state(task.split.X[rows])
        device = state.doc.device
        stop = task.stop_action
        last = torch.full((batch,), START, dtype=torch.long, device=device)
        active = torch.ones(batch, dtype=torch.bool, device=device)
        columns: dict[str, list[torch.Tensor]] = {k: [] for k in ("a", "lp", "h", "v", "r", "m")}
        zero = torch.zeros((), device=device)
        emitted = policy.new_emitted(state)  # the env's masks, kept by the output layer
        steps = FusedSteps(policy, state) if self.fused and fused_applies(policy) and not policy.training else None
        for _ in range(task.max_steps):
            if steps is not None:
                choice, value = steps.choose(
                    last, active, emitted, sample=sample, temperature=temperature, generator=generator
                )
            else:
                joint, value, state = policy.step_joint(state, last)
                choice = policy.output.choose(
                    joint, emitted, suppress_stop=False, sample=sample, temperature=temperature, generator=generator
                )
            action = torch.where(active, choice.action, torch.full_like(choice.action, stop))  # ended envs ignore it
            _, rewards, terminated, truncated, _ = env.step(action.cpu().numpy())
            chosen, entropy = choice.log_prob, choice.entropy
            columns["a"].append(action.masked_fill(~active, START))
            columns["lp"].append(torch.where(active, chosen, zero))
            columns["h"].append(torch.where(active, entropy, zero))
            columns["v"].append(torch.where(active, value, zero))
            columns["r"].append(torch.from_numpy(rewards.astype(np.float32)).to(device))
            columns["m"].append(active)
            emitted.add(action, active, stop)
            active = active & ~torch.from_numpy(terminated | truncated).to(device)
            last = action
            if not bool(active.any()):
                break
        a, lp, h, v, r, m = (torch.stack(columns[k], dim=1) for k in ("a", "lp", "h", "v", "r", "m"))
        return Episodes(rows, a, lp, h, v, r, m, stop)


# ----------------------------------------------------------------------------- returns, advantages
def discounted_returns(rewards: torch.Tensor, valid: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Monte-Carlo returns G_t = r_t + gamma * G_{t+1} within each episode, 0 after its end."""
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0]) if rewards.shape[1] else None
    for t in range(rewards.shape[1] - 1, -1, -1):  # a loop over steps, never over documents
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return torch.where(valid, returns, torch.zeros_like(returns))


def self_critical_baseline(rewards: torch.Tensor, valid: torch.Tensor, greedy_return: torch.Tensor) -> torch.Tensor:
    """Baseline b_t = R_greedy - (rewards collected before t) of the same document.

    With gamma = 1 this makes G_t - b_t = R_sample - R_greedy at every step: the classic
    self-critical advantage, written per step; b_t depends only on the past, so it stays unbiased.
    """
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
    collected_before = rewards.cumsum(dim=1) - rewards
    baseline = greedy_return[:, None] - collected_before
    return torch.where(valid, baseline, torch.zeros_like(baseline))


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, x, torch.zeros_like(x)).sum() / valid.sum().clamp(min=1)


def compute_advantages(
    returns: torch.Tensor, baseline: torch.Tensor | None, valid: torch.Tensor, *, normalize: bool = False
) -> torch.Tensor:
    """(returns - baseline) on valid steps (baseline None = no baseline), optionally standardised.

    Normalisation uses the mean and (population) standard deviation over the valid steps only.
    """
    adv = returns if baseline is None else returns - baseline.detach()
    adv = torch.where(valid, adv, torch.zeros_like(adv))
    if normalize:
        mean = masked_mean(adv, valid)
        std = masked_mean((adv - mean) ** 2, valid).sqrt()
        adv = torch.where(valid, (adv - mean) / (std + 1e-8), torch.zeros_like(adv))
    return adv


# ----------------------------------------------------------------------------- losses
def actor_critic_loss(
    log_probs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropies: torch.Tensor,
    valid: torch.Tensor,
    *,
    value_coef: float = 0.5,
    entropy_coef: float = 0.01,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REINFORCE / actor-critic: mean over valid steps of -(A logp) + c_v (V - G)^2 - c_H H."""
    policy_loss = masked_mean(-advantages.detach() * log_probs, valid)
    value_loss = masked_mean((values - returns.detach()) ** 2, valid)
    entropy = masked_mean(entropies, valid)
    total = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return total, {"policy": policy_loss, "value": value_loss, "entropy": entropy}


def ppo_clip_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate: mean over valid steps of max(-A r, -A clip(r, 1-eps, 1+eps)), r = p_new/p_old.

    Also returns approx_kl = mean((r - 1) - log r) and clipfrac = share of steps with |r - 1| > eps.
    """
    log_ratio = new_log_probs - old_log_probs.detach()
    ratio = log_ratio.exp()
    adv = advantages.detach()
    surrogate = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip))
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, valid)
        clipfrac = masked_mean(((ratio - 1.0).abs() > clip).float(), valid)
    return masked_mean(surrogate, valid), {"approx_kl": approx_kl, "clipfrac": clipfrac}


def combined_loss(rl_loss: torch.Tensor, teacher_forcing: torch.Tensor, rl_weight: float = 0.9) -> torch.Tensor:
    """w * RL + (1 - w) * teacher forcing on the rearranged targets of the same sampled chains."""
    if not 0.0 <= rl_weight <= 1.0:
        raise ValueError(f"rl_weight must be in [0, 1], got {rl_weight}")
    return rl_weight * rl_loss + (1.0 - rl_weight) * teacher_forcing

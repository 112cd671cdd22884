"""What every learner shares: its knobs (`LearnerConfig`) and the `Learner` base class.

Kept apart from agents/learners.py, which holds the eight concrete learners and `make_learner`:
the base owns the plumbing none of them varies (optimizer and gradient clipping, the seeded numpy /
torch generators, the episode collector over the training split, BCL guidance added to every step,
bit-identical `state_dict` / `load_state_dict`), so a learner there only writes its `_update`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelchain.agents.optim import clip_grad_norm, make_optimizer
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.prior_columns import shortlist_in_columns
from labelchain.agents.precision import autocast, check_precision, full_precision
from labelchain.agents.rl import BASELINES, EpisodeCollector, Episodes
from labelchain.envs.chain_task import ChainTask, default_max_steps
from labelchain.envs.data.dataset import Split
from labelchain.envs.rewards import DEFAULT_REWARD_MODE, check_reward_args

__all__ = ["LR", "PPO_LR", "RL_LEARNERS", "RL_LR", "Learner", "LearnerConfig", "build_learner_config"]

# Learners trained on sampled chains: they fine-tune a warm start, so they may take their own rate.
RL_LEARNERS = ("reinforce", "ppo", "combined")
# The one set of default rates (agents.config.DEFAULTS' run section, train_rl's flags, train_epochs, the grids), picked per
# learner by `build_learner_config`. Supervised learners: LR. reinforce / combined: RL_LR, lower because
# they fine-tune a warm start (bibtex seed 0: 1e-3 drifted below the start on val nDCG@3, 3e-4 rose
# above it). ppo: PPO_LR, as it takes ppo_epochs x ppo_minibatches steps per rollout (bibtex seed 0,
# 100 updates from the warm start: 3e-4 drifted val nDCG@3 0.579 -> 0.501, 5e-5 held 0.578-0.584).
LR, RL_LR, PPO_LR = 1e-3, 3e-4, 5e-5


@dataclass
class LearnerConfig:
    """Knobs shared by all learners; each learner reads the ones it needs.

    max_steps None = the environment's default cap (a little above the largest training label set).
    """

    lr: float = LR
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
    fused: bool = True  # agents.fused's rollout and teacher-forcing passes; False = the nn.GRU ones (benchmarks)
    precision: str = "fp32"  # agents.precision: "bf16" = bf16 matrix products (scripts resolve it per device)

    def check(self) -> None:
        check_reward_args(self.reward, self.reward_mode)
        check_precision(self.precision)
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


def build_learner_config(
    learner: str, lr: float, *, rl_lr: float | None = None, ppo_lr: float | None = None, **fields: Any
) -> LearnerConfig:
    """Learner `learner`'s config from a script's knobs: the one place the rate is picked.

    RL learners take `rl_lr` when given, ppo takes `ppo_lr` over that; every other LearnerConfig
    field comes from `fields` as is (a name LearnerConfig lacks raises TypeError).
    """
    if learner in RL_LEARNERS and rl_lr is not None:
        lr = rl_lr
    if learner == "ppo" and ppo_lr is not None:
        lr = ppo_lr
    return LearnerConfig(lr=lr, **fields)


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
            # a shortlisting prior policy: the envs mask what its output layer blocks (agents.prior_columns)
            shortlist=shortlist_in_columns(train.X, policy.n_features, policy.n_labels) if policy.shortlist else None,
        )
        self.lead_from = None if policy.mcg is None else policy.mcg.n_labels  # MCG targets: clusters first
        self.collector = EpisodeCollector(self.task, fused=config.fused)
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
        with (
            torch.backends.cudnn.flags(enabled=not self.differentiates_in_eval_mode),
            autocast(self.config.precision, self.policy.input_weight.device.type),
        ):
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
        with full_precision(self.policy.input_weight.device.type):  # fp32 gradients and optimiser state
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

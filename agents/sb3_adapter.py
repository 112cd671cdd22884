"""sb3-contrib MaskablePPO over the shared `ChainPolicy` weights.

SB3 sees a memoryless policy: each observation carries the document features and the labels
emitted so far, and `ChainPolicy.prefix_logits` re-runs the GRU over that history. So MaskablePPO
trains exactly the weights the native learners train, and `chain_policy_from(model)` hands them back
as a standalone `ChainPolicy` for `agents.decoding`, `ChainPolicy.save`, warm starts, ensembling.

MCG (agents.mcg, cluster tokens before labels): a `LabelChainEnv(..., mcg=spec)` already masks
its actions by the MCG constraint (`action_masks()`), and MaskablePPO applies those masks in its
rollouts and updates; `make_maskable_ppo` gives the chain the env's spec (the `mcg` key), so the
policy handed back decodes under the same constraint and scores label columns only.

Shortlists (envs.shortlist, `LabelChainEnv(..., shortlist=S)`): the env's `action_masks()` already
apply the one rule (`envs.shortlist.allowed_actions`: not emitted AND shortlisted; STOP always), and
MaskablePPO reads them in rollouts (through SB3's wrappers: `get_wrapper_attr`), stores them in its
buffer and applies them in updates, so nothing here changes. A shortlist belongs to documents, not
to the policy: `predict(obs, action_masks=env.action_masks())` stays inside it, and the policy handed
back by `chain_policy_from` needs the shortlist given to its decoder.

What the adapter replaces in `MaskableActorCriticPolicy`: SB3's preprocessing (it would one-hot the
`history` MultiDiscrete and the `step` Discrete), the features extractor and the MLP heads. What it
keeps: SB3's masked categorical distribution, optimizer handling, `predict`, and save/load
(the `ChainPolicy` config travels in the constructor parameters, its weights in the state dict).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.vec_env import VecEnv

from labelchain.agents.policy import START, ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.envs.chain_task import ChainTask
from labelchain.envs.mcg import MCGSpec

CHAIN_ARCH_KEYS = (
    "hidden_size",
    "doc_size",
    "label_embed_size",
    "dropout",
    "aux_weight",
    "input_dropout",
    "output",
    "tree",
    "tree_beam",
    "sparse_label_grads",
    "tree_query_size",
    "mcg",
    "prior",
    "shortlist",
    "label_history",
)


class RawObservation(BaseFeaturesExtractor):
    """Placeholder extractor: the adapter reads the raw observation dict itself (no parameters)."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations: PyTorchObs) -> PyTorchObs:  # type: ignore[override]
        return observations


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> tuple[int, int]:
    """(n_features, n_labels) of a LabelChain observation/action space pair, or a clear error."""
    if not isinstance(observation_space, spaces.Dict) or not {"features", "history"} <= set(observation_space.spaces):
        raise ValueError(
            "ChainPolicyAdapter needs a LabelChain Dict observation with 'features' and 'history', "
            f"got {observation_space}"
        )
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"ChainPolicyAdapter needs a Discrete(L + 1) action space, got {action_space}")
    n_labels = int(action_space.n) - 1
    history_space = observation_space["history"]
    if not isinstance(history_space, spaces.MultiDiscrete) or np.any(history_space.nvec != n_labels + 1):
        raise ValueError(
            f"'history' must be MultiDiscrete with every entry L + 1 = {n_labels + 1}, got {history_space}"
        )
    return int(observation_space["features"].shape[0]), n_labels


class ChainPolicyAdapter(MaskableActorCriticPolicy):
    """A `MaskableActorCriticPolicy` whose logits and value are `ChainPolicy.prefix_logits`.

    Policy kwargs: the `ChainPolicy` architecture (`hidden_size`, `doc_size`, `label_embed_size`,
    `dropout`) plus SB3's `optimizer_class` / `optimizer_kwargs`. Dropout defaults to 0 here (not
    ChainPolicy's 0.1): PPO's probability ratio assumes the rollout network (eval mode) and the
    update network (train mode) are the same function.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *,
        hidden_size: int = 256,
        doc_size: int | None = None,
        label_embed_size: int = 64,
        dropout: float = 0.0,
        aux_weight: float = 0.0,
        input_dropout: float = 0.0,
        output: str = "flat",
        tree: Any = None,
        tree_beam: int = 10,
        sparse_label_grads: bool = False,
        tree_query_size: int | None = None,
        mcg: MCGSpec | dict | None = None,
        prior: str = "none",
        shortlist: bool = False,
        label_history: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **unused_sb3_kwargs: Any,
    ) -> None:
        n_features, n_labels = _check_spaces(observation_space, action_space)
        n_features -= n_labels if prior != "none" else 0  # a prior policy's rows end with L prior columns
        ignored = set(unused_sb3_kwargs) - {
            "normalize_images",
            "net_arch",
            "activation_fn",
            "ortho_init",
            "features_extractor_class",
            "features_extractor_kwargs",
            "share_features_extractor",
        }
        if ignored:
            raise TypeError(f"ChainPolicyAdapter got unexpected policy_kwargs {sorted(ignored)}")
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            features_extractor_class=RawObservation,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        self.chain = ChainPolicy.from_config(
            PolicyConfig(
                n_features,
                n_labels,
                hidden_size=hidden_size,
                doc_size=doc_size,
                aux_weight=aux_weight,
                input_dropout=input_dropout,
                label_embed_size=label_embed_size,
                dropout=dropout,
                output=output,
                tree=tree,
                tree_beam=tree_beam,
                sparse_label_grads=sparse_label_grads,
                tree_query_size=tree_query_size,
                mcg=mcg,
                prior=prior,
                shortlist=shortlist,
                label_history=label_history,
            )
        )
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        """Called by the parent constructor; the chain and its optimizer are built right after it."""

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("net_arch", "activation_fn", "ortho_init", "features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        data.update({key: self.chain.config[key] for key in CHAIN_ARCH_KEYS if key in self.chain.config})
        return data

    # ------------------------------------------------------------------ observation -> chain inputs
    def chain_inputs(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense features (B, d) and the history as ChainPolicy wants it (L = empty slot -> -1)."""
        if not isinstance(obs, dict):
            raise TypeError(f"ChainPolicyAdapter expects a dict observation, got {type(obs).__name__}")
        features = obs["features"].float().reshape(-1, self.chain.feature_widths[-1])
        history = obs["history"]
        history = (history.round() if history.is_floating_point() else history).long()
        history = history.reshape(features.shape[0], -1)
        return features, history.masked_fill(history >= self.chain.n_labels, START)

    def logits_and_values(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        """Unmasked action logits (B, L+1) and values (B, 1), as SB3 shapes values."""
        features, history = self.chain_inputs(obs)
        logits, values = self.chain.prefix_logits(features, history)
        return logits, values[:, None]

    def extract_features(self, obs: PyTorchObs, features_extractor: BaseFeaturesExtractor | None = None):  # type: ignore[override]
        return self.chain_inputs(obs)

    def _distribution(self, logits: torch.Tensor, action_masks) -> MaskableDistribution:
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    # ------------------------------------------------------------------ SB3 policy interface
    def forward(
        self, obs: PyTorchObs, deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, values = self.logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions.reshape(-1, *self.action_space.shape), values, distribution.log_prob(actions)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor, action_masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        logits, values = self.logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs, action_masks: np.ndarray | None = None) -> MaskableDistribution:
        return self._distribution(self.logits_and_values(obs)[0], action_masks)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        return self.logits_and_values(obs)[1]


# ---------------------------------------------------------------------- helpers
def _env_task(env: gym.Env | VecEnv) -> ChainTask | None:
    """The ChainTask behind a LabelChainEnv (or a VecEnv of them); None for any other env."""
    if isinstance(env, VecEnv):
        return env.get_attr("task", indices=[0])[0] if env.has_attr("task") else None
    return getattr(env.unwrapped, "task", None)


def _check_mcg(config: dict[str, Any], task: ChainTask | None, from_policy: bool) -> None:
    """Give the chain the env's MCG spec, or fail when the chain's and the env's disagree.

    A config dict without an `mcg` key takes the env's; a ChainPolicy keeps its own (None when it
    has none), so a plain policy is never silently turned into an MCG one."""
    env_mcg = None if task is None or task.mcg is None else task.mcg.config()
    given = config.get("mcg") if from_policy else config.get("mcg", env_mcg)
    given = given.config() if isinstance(given, MCGSpec) else given
    if given != env_mcg:
        ours = "no mcg clusters" if given is None else "mcg clusters"
        theirs = "none" if env_mcg is None else "some" if given is None else "other ones"
        raise ValueError(
            f"chain policy has {ours} but the env has {theirs}; build the env with "
            "LabelChainEnv(..., mcg=policy.mcg) (MCG needs the same spec on both)"
        )
    if env_mcg is not None:
        config["mcg"] = env_mcg


def make_maskable_ppo(
    env: gym.Env | VecEnv,
    chain_policy_or_config: ChainPolicy | dict[str, Any] | None = None,
    *,
    fit_normalization: bool = True,
    policy_kwargs: dict[str, Any] | None = None,
    **ppo_kwargs: Any,
) -> MaskablePPO:
    """MaskablePPO training a ChainPolicy on a LabelChain env.

    Given a `ChainPolicy`, the model starts from a copy of its weights (normalization included; the
    original is left untouched). Given a config dict (architecture keys of `ChainPolicy.config`;
    `n_features`/`n_labels` are checked against the env) or None, weights are fresh and, with
    `fit_normalization`, the input normalization is fitted on the env's training features.
    An MCG env (`LabelChainEnv(..., mcg=spec)`) gives the chain its spec; a chain's own `mcg` must
    equal the env's.
    """
    source = chain_policy_or_config if isinstance(chain_policy_or_config, ChainPolicy) else None
    config = dict(source.config if source is not None else (chain_policy_or_config or {}))
    n_features, n_labels = _check_spaces(env.observation_space, env.action_space)
    n_features -= n_labels if config.get("prior", "none") != "none" else 0  # the prior columns are not features
    for key, expected in (("n_features", n_features), ("n_labels", n_labels)):
        given = config.pop(key, expected)
        if int(given) != expected:
            raise ValueError(f"chain policy has {key}={given} but the env has {expected}")
    task = _env_task(env)
    _check_mcg(config, task, from_policy=source is not None)
    unknown = set(config) - set(CHAIN_ARCH_KEYS)
    if unknown:
        raise ValueError(f"unknown ChainPolicy config keys {sorted(unknown)}; expected some of {CHAIN_ARCH_KEYS}")
    kwargs = {**config, **(policy_kwargs or {})}
    model = MaskablePPO(ChainPolicyAdapter, env, policy_kwargs=kwargs, **ppo_kwargs)
    chain = model.policy.chain
    if source is not None:
        chain.load_state_dict(source.state_dict())
    elif fit_normalization:
        if task is None:
            raise ValueError("fit_normalization=True needs a LabelChainEnv (its .task holds the features)")
        chain.fit_input_normalization(task.split.X)
    return model


def chain_policy_from(model: MaskablePPO | ChainPolicyAdapter) -> ChainPolicy:
    """The trained weights as an independent ChainPolicy (on CPU, same config, copied tensors)."""
    adapter = model.policy if isinstance(model, MaskablePPO) else model
    if not isinstance(adapter, ChainPolicyAdapter):
        raise TypeError(f"expected a MaskablePPO built on ChainPolicyAdapter, got policy {type(adapter).__name__}")
    policy = ChainPolicy.from_config(adapter.chain.config)
    policy.load_state_dict({key: value.detach().cpu().clone() for key, value in adapter.chain.state_dict().items()})
    return policy

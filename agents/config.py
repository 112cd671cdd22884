"""The one configuration: policy / learner / run sections, one set of defaults, a dict round trip.

    Config
    ├── policy: PolicyConfig   architecture (agents.policy_config; built by agents.policy_factory)
    ├── learner: LearnerConfig what every learner reads (agents.learner_base; lr = supervised rate)
    └── run: RunConfig         how a learner's training runs: budget, rates per learner kind,
                               validation, early stopping (train_rl's LearnerRun and train_epochs)

`DEFAULTS = Config()` is the one set of defaults: train_rl's flags (experiments.run.config.TrainKnobs),
train_epochs' `TrainConfig`, the grids' `GridArgs` and the presets read their defaults from it, so a
default is written once. `to_dict` / `from_dict` round-trip through JSON-able nested dicts (PECOS'
TrainParams / PredParams are the model); a missing key takes its default, an unknown key is named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from labelchain.agents.learner_base import PPO_LR, RL_LR, LearnerConfig, build_learner_config
from labelchain.agents.policy_config import PolicyConfig

__all__ = ["DEFAULTS", "Config", "RunConfig"]


@dataclass(frozen=True)
class RunConfig:
    """How a learner trains: the budget (train_rl counts updates, train_epochs epochs), the rates of
    the learner kinds (`build_learner_config` picks one), validation and the one patience rule
    (`agents.training.out_of_patience`: stop after `patience` validations without improvement)."""

    updates: int = 500
    epochs: int = 30
    eval_every: int = 50
    checkpoint_every: int = 100
    val_fraction: float = 0.1
    select_metric: str = "nDCG@3"
    patience: int | None = None
    max_seconds: float | None = None
    rl_lr: float | None = RL_LR
    ppo_lr: float | None = PPO_LR

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(**_known(cls, data, "run"))


@dataclass(frozen=True)
class Config:
    """The nested configuration (see the module docstring); `DEFAULTS` holds its defaults."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def learner_config(self, name: str) -> LearnerConfig:
        """Learner `name`'s LearnerConfig: the learner section at that learner's rate (the one rule)."""
        knobs = {k: v for k, v in asdict(self.learner).items() if k != "lr"}
        return build_learner_config(name, self.learner.lr, rl_lr=self.run.rl_lr, ppo_lr=self.run.ppo_lr, **knobs)

    def replace(self, **sections: Any) -> Config:
        return replace(self, **sections)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "learner": asdict(self.learner), "run": self.run.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of `to_dict`; missing sections or keys take their defaults, unknown ones are named."""
        unknown = sorted(set(data) - {"policy", "learner", "run"})
        if unknown:
            raise TypeError(f"unknown config sections {unknown} (expected policy, learner, run)")
        return cls(
            PolicyConfig.from_dict(data.get("policy", {})),
            LearnerConfig(**_known(LearnerConfig, data.get("learner", {}), "learner")),
            RunConfig.from_dict(data.get("run", {})),
        )


def _known(cls: type, data: dict[str, Any], section: str) -> dict[str, Any]:
    unknown = sorted(set(data) - {spec.name for spec in fields(cls)})
    if unknown:
        raise TypeError(f"unknown {section} config keys {unknown}")
    return dict(data)


DEFAULTS = Config()

"""The one configuration: policy / learner / run sections, one set of defaults, a dict round trip.

    Config
    ├── policy: PolicyConfig   architecture (agents.policy_config; built by agents.policy_factory)
    ├── learner: LearnerConfig what every learner reads (agents.learner_base; lr = supervised rate)
    └── run: RunConfig         how a learner's training runs: budget, rates per learner kind,
                               validation, early stopping (train_rl's LearnerRun and train_epochs)

`DEFAULTS = Config()` is the one set of defaults, and a `Config` is what everything trains from:
`train_epochs` takes one, the presets are named ones (experiments.run.presets), train_rl's flags
(experiments.run.config.TrainKnobs) and the variant grids' flags (experiments.grid.variants.GridArgs)
read their defaults from it and turn into one (`TrainKnobs.config`, `Config.of`). `to_dict` /
`from_dict` round-trip through JSON-able nested dicts (PECOS' TrainParams / PredParams are the
model); a missing key takes its default, an unknown key is named. Field names are unique across the
sections, so `Config.of(epochs=4, seed=0)` / `config.changed(lr=3e-3)` / `config.flat()` address a
field by its name alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from labelchain.agents.learner_base import PPO_LR, RL_LR, LearnerConfig, build_learner_config
from labelchain.agents.policy_config import PolicyConfig

__all__ = ["DEFAULTS", "SECTION_OF", "Config", "RunConfig"]


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
    combined_epochs: int = 1  # epoch loops: the combined learner's budget after rearrangement (strength, grids)
    extra_checkpoints: tuple[str, ...] = ()  # more metrics to keep a best checkpoint for (e.g. example_f1)
    val_batch_size: int = 512  # documents per validation decoding batch

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extra_checkpoints": list(self.extra_checkpoints)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = _known(cls, data, "run")
        if "extra_checkpoints" in known:
            known["extra_checkpoints"] = tuple(known["extra_checkpoints"])
        return cls(**known)


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

    @classmethod
    def of(cls, **values: Any) -> Config:
        """`DEFAULTS` with `values`, each a field of one section by its name (`Config.of(epochs=4, lr=3e-3)`)."""
        return DEFAULTS.changed(**values)

    def changed(self, **values: Any) -> Config:
        """A copy with `values` (fields by name, from any section); an unknown name is a TypeError naming it."""
        by_section: dict[str, dict[str, Any]] = {"policy": {}, "learner": {}, "run": {}}
        for name, value in values.items():
            if name not in SECTION_OF:
                raise TypeError(f"unknown config field {name!r} (not in policy, learner or run)")
            by_section[SECTION_OF[name]][name] = value
        if by_section["run"].get("extra_checkpoints") is not None:
            by_section["run"]["extra_checkpoints"] = tuple(by_section["run"]["extra_checkpoints"])
        return Config(
            self.policy.replace(**by_section["policy"]),
            replace(self.learner, **by_section["learner"]),
            replace(self.run, **by_section["run"]),
        )

    def flat(self) -> dict[str, Any]:
        """Every field of every section by its name (the inverse of `Config.of`)."""
        return {
            name: getattr(getattr(self, section), name)
            for section, cls in _SECTIONS.items()
            for name in (spec.name for spec in fields(cls))
        }

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


_SECTIONS: dict[str, type] = {"policy": PolicyConfig, "learner": LearnerConfig, "run": RunConfig}
SECTION_OF = {spec.name: section for section, cls in _SECTIONS.items() for spec in fields(cls)}
if len(SECTION_OF) != sum(len(fields(cls)) for cls in _SECTIONS.values()):  # `of` / `changed` need unique names
    raise TypeError("a config field name appears in two sections")

DEFAULTS = Config()

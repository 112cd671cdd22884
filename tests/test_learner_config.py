"""Both scripts' knobs become the same `LearnerConfig` through one builder: values pinned from before it.

train_rl (`experiments.run.train_rl_args.learner_config`) and train_epochs (then `TrainConfig.learner_config`, now `agents.training.epoch_learner_config`)
once built the config each in its own way; the numbers below were read from those two copies before they
were folded into `agents.learner_base.build_learner_config`, so any drift in either caller fails here.
"""

from dataclasses import asdict

import pytest

from labelchain.agents.learner_base import RL_LEARNERS, LearnerConfig, build_learner_config
from labelchain.agents.learners import LEARNERS
from labelchain.agents.config import Config
from labelchain.agents.training import epoch_learner_config
from labelchain.experiments import train_rl
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.train_rl_args import Args, learner_config

# LearnerConfig's defaults, written out so the pins below name every field.
DEFAULTS = {
    "lr": 1e-3,
    "batch_size": 64,
    "seed": 0,
    "reward": "f1",
    "reward_mode": "delta",
    "baseline": "value",
    "entropy_coef": 0.01,
    "value_coef": 0.5,
    "gamma": 1.0,
    "ppo_epochs": 4,
    "ppo_clip": 0.2,
    "ppo_minibatches": 4,
    "rl_weight": 0.9,
    "temperature": 1.0,
    "max_steps": None,
    "grad_clip": 1.0,
    "greedy_rearrangement": False,
    "normalize_advantages": True,
    "weight_decay": 0.0,
    "greedy_charts": True,
    "fused": True,  # agents.fused (False: the nn.GRU passes, for the training benchmark)
    "precision": "fp32",
}

# train_rl flags away from their defaults, and the fields they set in every learner's config.
TRAIN_RL_ARGS = {
    "lr": 2e-3,
    "rl_lr": 5e-4,
    "ppo_lr": 1e-4,
    "batch_size": 16,
    "seed": 3,
    "baseline": "self_critical",
    "entropy_coef": 0.05,
    "rl_weight": 0.7,
    "ppo_epochs": 2,
    "ppo_minibatches": 3,
    "greedy_rearrangement": True,
    "weight_decay": 0.01,
}
TRAIN_RL_SHARED = {k: v for k, v in TRAIN_RL_ARGS.items() if k not in ("lr", "rl_lr", "ppo_lr")} | {"max_steps": 25}

# train_epochs' config away from its defaults, and what it sets (no charts: greedy_charts False).
TRAIN_CONFIG = {
    "lr": 2e-3,
    "rl_lr": 5e-4,
    "batch_size": 16,
    "seed": 3,
    "max_steps": 25,
    "greedy_rearrangement": True,
    "temperature": 0.5,
    "grad_clip": None,
    "weight_decay": 0.01,
}
TRAIN_CONFIG_SHARED = {k: v for k, v in TRAIN_CONFIG.items() if k not in ("lr", "rl_lr")} | {"greedy_charts": False}


def test_defaults_are_the_pinned_ones() -> None:
    assert asdict(LearnerConfig()) == DEFAULTS


@pytest.mark.parametrize(
    ("name", "lr"),
    [("", 2e-3), ("freq2rare", 2e-3), ("rearrange", 2e-3), ("reinforce", 5e-4), ("ppo", 1e-4), ("combined", 5e-4)],
)
def test_train_rl_configs_as_before(name: str, lr: float) -> None:
    config = learner_config(Args(**TRAIN_RL_ARGS), 25, name)  # type: ignore[arg-type]
    assert asdict(config) == DEFAULTS | TRAIN_RL_SHARED | {"lr": lr}


def test_train_rl_ppo_takes_its_own_default_rate() -> None:
    """--ppo-lr's default (5e-5) wins over --rl-lr for ppo; max_steps None = the env's cap."""
    assert asdict(learner_config(Args(rl_lr=3e-4), None, "ppo")) == DEFAULTS | {"lr": 5e-5}
    assert asdict(learner_config(Args(rl_lr=3e-4, ppo_lr=None), None, "ppo")) == DEFAULTS | {"lr": 3e-4}


@pytest.mark.parametrize(
    ("name", "lr"),
    # ppo: the config's ppo_lr default (5e-5, train_rl's) wins over rl_lr; before the one rate rule it
    # had no ppo_lr and trained ppo at rl_lr (5e-4 here)
    [("freq2rare", 2e-3), ("rearrange", 2e-3), ("reinforce", 5e-4), ("ppo", 5e-5), ("combined", 5e-4)],
)
def test_train_epochs_configs_as_before(name: str, lr: float) -> None:
    config = epoch_learner_config(Config.of(**TRAIN_CONFIG), name)
    assert asdict(config) == DEFAULTS | TRAIN_CONFIG_SHARED | {"lr": lr}


def test_train_epochs_default_config() -> None:
    assert asdict(epoch_learner_config(Config(), "freq2rare")) == DEFAULTS | {"greedy_charts": False}


@pytest.mark.parametrize("name", LEARNERS)
def test_one_rate_rule_train_epochs_and_train_rl_defaults_agree(name: str) -> None:
    """The same learner trains at the same default rate through train_epochs and through train_rl
    (before: train_epochs ran ppo / reinforce / combined at 1e-3, train_rl at 5e-5 / 3e-4 / 3e-4)."""
    expected = {"reinforce": 3e-4, "combined": 3e-4, "ppo": 5e-5}.get(name, 1e-3)
    assert epoch_learner_config(Config(), name).lr == expected
    assert learner_config(Args(), None, name).lr == expected


def test_builder_rates_and_unknown_fields() -> None:
    """RL learners take rl_lr, ppo takes ppo_lr over it; a field LearnerConfig lacks is refused."""
    assert RL_LEARNERS == LEARNERS[5:]
    rates = {name: build_learner_config(name, 1.0, rl_lr=0.5, ppo_lr=0.25).lr for name in LEARNERS}
    assert rates == {name: 1.0 for name in LEARNERS[:5]} | {"reinforce": 0.5, "ppo": 0.25, "combined": 0.5}
    assert build_learner_config("ppo", 1.0, rl_lr=0.5).lr == 0.5
    assert build_learner_config("ppo", 1.0, ppo_lr=0.25).lr == 0.25
    assert build_learner_config("rearrange", 1.0, ppo_lr=0.25, seed=7).seed == 7
    with pytest.raises(TypeError, match="no_such_knob"):
        build_learner_config("ppo", 1.0, no_such_knob=1)


def test_train_rl_public_names() -> None:
    """train_rl keeps only its documented entry point (`Args`, README) and `main`; the rest lives where defined."""
    assert train_rl.__all__ == ["Args", "main"]
    assert train_rl.Args is train_rl_args.Args

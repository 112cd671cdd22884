"""The one configuration (agents.config): nested sections, a JSON round trip, and every knob dataclass
(train_rl's flags, train_epochs' TrainConfig, the grids' GridArgs, the presets) taking its defaults
from `DEFAULTS` instead of a literal of its own."""

import json
from dataclasses import asdict, fields

import pytest

from labelchain.agents.config import DEFAULTS, Config, RunConfig
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import LEARNERS
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.training import TrainConfig
from labelchain.experiments.grid.variants import GridArgs
from labelchain.experiments.run.config import TrainKnobs
from labelchain.experiments.run.presets import PRESETS, Preset
from labelchain.experiments.run.setup import config_of


def test_defaults_round_trip_through_json():
    data = json.loads(json.dumps(DEFAULTS.to_dict()))
    assert set(data) == {"policy", "learner", "run"}
    assert Config.from_dict(data) == DEFAULTS
    assert data["run"] == {
        "updates": 500,
        "epochs": 30,
        "eval_every": 50,
        "checkpoint_every": 100,
        "val_fraction": 0.1,
        "select_metric": "nDCG@3",
        "patience": None,
        "max_seconds": None,
        "rl_lr": 3e-4,
        "ppo_lr": 5e-5,
    }
    assert (data["policy"]["hidden_size"], data["policy"]["dropout"], data["learner"]["lr"]) == (128, 0.1, 1e-3)


def test_partial_dicts_take_defaults_and_unknown_keys_are_named():
    config = Config.from_dict({"run": {"updates": 7}, "policy": {"hidden_size": 32}})
    assert config.run.updates == 7 and config.run.eval_every == 50 and config.policy.hidden_size == 32
    assert config.learner == LearnerConfig()
    with pytest.raises(TypeError, match="'updatez'"):
        Config.from_dict({"run": {"updatez": 7}})
    with pytest.raises(TypeError, match="'lerner'"):
        Config.from_dict({"lerner": {}})
    with pytest.raises(TypeError, match="'lr_rate'"):
        Config.from_dict({"learner": {"lr_rate": 1.0}})


def test_train_rl_flag_defaults_are_the_config_defaults():
    """No second literal default: TrainKnobs() describes exactly DEFAULTS."""
    assert config_of(TrainKnobs()) == DEFAULTS


def test_flags_map_onto_the_sections():
    args = TrainKnobs(hidden_size=32, lr=2e-3, ppo_lr=None, updates=9, patience=3, guidance="bcl", clusters=4)
    config = config_of(args, seed=5)
    assert (config.policy.hidden_size, config.policy.n_clusters) == (32, 4)
    assert (config.learner.lr, config.learner.seed) == (2e-3, 5)
    assert (config.run.updates, config.run.patience, config.run.ppo_lr) == (9, 3, None)
    assert config.learner_config("ppo").lr == 3e-4  # ppo_lr none: the RL rate


@pytest.mark.parametrize("name", LEARNERS)
def test_train_epochs_defaults_are_the_config_defaults(name):
    assert asdict(TrainConfig().learner_config(name)) == asdict(DEFAULTS.learner_config(name)) | {
        "greedy_charts": False
    }
    train = TrainConfig()
    assert (train.epochs, train.patience, train.val_metric, train.val_fraction, train.max_seconds) == (
        DEFAULTS.run.epochs,
        DEFAULTS.run.patience,
        DEFAULTS.run.select_metric,
        DEFAULTS.run.val_fraction,
        DEFAULTS.run.max_seconds,
    )


def test_grid_and_preset_defaults_are_the_config_defaults():
    grid = GridArgs()
    assert (grid.hidden_size, grid.batch_size, grid.lr, grid.rl_lr, grid.select_metric, grid.val_fraction) == (
        DEFAULTS.policy.hidden_size,
        DEFAULTS.learner.batch_size,
        DEFAULTS.learner.lr,
        DEFAULTS.run.rl_lr,
        DEFAULTS.run.select_metric,
        DEFAULTS.run.val_fraction,
    )
    defaulted = {
        spec.name: spec.default for spec in fields(Preset) if spec.name in ("batch_size", "updates", "eval_every")
    }
    assert defaulted == {"batch_size": 64, "updates": 500, "eval_every": 50}
    assert PRESETS["small"].policy_config().hidden_size == 128


def test_run_section_round_trip():
    run = RunConfig(updates=3, patience=2, rl_lr=None)
    assert RunConfig.from_dict(run.to_dict()) == run
    assert Config(PolicyConfig(output="tree", tree_leaf_size=8), run=run).to_dict()["policy"]["tree_leaf_size"] == 8

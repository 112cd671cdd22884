"""The one configuration (agents.config): nested sections, a JSON round trip, flat access by field
name; train_epochs and the presets are `Config`s, and the flag classes (train_rl's TrainKnobs, the
grids' GridArgs) take their defaults from `DEFAULTS` and turn into a `Config`."""

import json
from dataclasses import asdict

import pytest

from labelchain.agents.config import DEFAULTS, Config, RunConfig
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import LEARNERS
from labelchain.agents.policy_config import PolicyConfig
from labelchain.experiments.grid.variants import GridArgs
from labelchain.experiments.run.config import TrainKnobs
from labelchain.experiments.run.presets import PRESETS, preset_record


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
        "combined_epochs": 1,
        "extra_checkpoints": [],
        "val_batch_size": 512,
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
    assert TrainKnobs().to_config() == DEFAULTS


def test_flags_map_onto_the_sections():
    args = TrainKnobs(hidden_size=32, lr=2e-3, ppo_lr=None, updates=9, patience=3, guidance="bcl", clusters=4)
    config = args.to_config(seed=5)
    assert (config.policy.hidden_size, config.policy.n_clusters) == (32, 4)
    assert (config.learner.lr, config.learner.seed) == (2e-3, 5)
    assert (config.run.updates, config.run.patience, config.run.ppo_lr) == (9, 3, None)
    assert config.learner_config("ppo").lr == 3e-4  # ppo_lr none: the RL rate


@pytest.mark.parametrize("name", LEARNERS)
def test_train_epochs_defaults_are_the_config_defaults(name):
    from labelchain.agents.training import epoch_learner_config

    assert asdict(epoch_learner_config(Config(), name)) == asdict(DEFAULTS.learner_config(name)) | {
        "greedy_charts": False
    }


def test_grid_defaults_are_the_config_defaults():
    grid = GridArgs()
    assert (grid.hidden_size, grid.batch_size, grid.lr, grid.rl_lr, grid.select_metric, grid.val_fraction) == (
        DEFAULTS.policy.hidden_size,
        DEFAULTS.learner.batch_size,
        DEFAULTS.learner.lr,
        DEFAULTS.run.rl_lr,
        DEFAULTS.run.select_metric,
        DEFAULTS.run.val_fraction,
    )


def test_presets_are_configs_and_record_the_old_shape():
    """A preset is a `Config`; strength.json records it in the flat shape the former `Preset` class had
    (the committed cells' "resolved" entries are exactly that), so finished cells stay reusable."""
    small = PRESETS["small"]
    assert isinstance(small, Config) and small.policy.hidden_size == 128 and small.run.combined_epochs == 2
    assert preset_record(small) == {
        "hidden_size": 128,
        "label_embed_size": 64,
        "dropout": 0.1,
        "input_dropout": 0.0,
        "aux_weight": 0.1,
        "weight_decay": 0.0,
        "lr": 1e-3,
        "rl_lr": 3e-4,
        "epochs": 5,
        "combined_epochs": 2,
        "patience": 2,
        "batch_size": 64,
        "updates": 500,
        "eval_every": 50,
    }
    from labelchain.experiments.grid.results_file import load_results
    from labelchain.experiments.run.common import REPO_ROOT

    cells = load_results(REPO_ROOT / "experiments" / "results" / "strength.json", "strength").sections["cells"]
    recorded = [cell["config"]["resolved"] for cell in cells.values() if cell["config"]["preset"] == "paper"]
    assert recorded and all(json.dumps(r) == json.dumps(preset_record(PRESETS["paper"])) for r in recorded)


def test_flat_names_address_one_section():
    config = Config.of(epochs=4, seed=2, hidden_size=16, extra_checkpoints=["P@1"])
    assert (config.run.epochs, config.learner.seed, config.policy.hidden_size) == (4, 2, 16)
    assert config.run.extra_checkpoints == ("P@1",)
    assert config.changed(lr=5e-3).learner.lr == 5e-3 and config.learner.lr == 1e-3
    assert Config.of(**DEFAULTS.flat()) == DEFAULTS
    with pytest.raises(TypeError, match="unknown config field 'val_metric'"):
        Config.of(val_metric="P@1")


def test_run_section_round_trip():
    run = RunConfig(updates=3, patience=2, rl_lr=None)
    assert RunConfig.from_dict(run.to_dict()) == run
    assert Config(PolicyConfig(output="tree", tree_leaf_size=8), run=run).to_dict()["policy"]["tree_leaf_size"] == 8

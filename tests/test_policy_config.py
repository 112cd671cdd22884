"""`PolicyConfig` writes exactly the saved configs of the hand-built config dict it replaced, and
policy folders saved before it existed load with the same outputs.

tests/fixtures/policies_v1 was written by the code before PolicyConfig (commit 068d934):
configs.json holds `ChainPolicy(**case).config` for the cases below, the folders hold saved policies
(config + weights) and expected.json their logits and values on a fixed input.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.envs.label_clusters import build_label_tree
from labelchain.envs.mcg import MCGSpec

FIXTURES = Path(__file__).parent / "fixtures" / "policies_v1"


def cases() -> dict[str, dict]:
    """The constructor arguments the fixtures were made with (same seeds)."""
    emb = np.random.default_rng(0).random((6, 4)).astype(np.float32)
    tree = build_label_tree(emb, 2, 2, seed=0)
    mcg = MCGSpec.from_assignment(np.array([0, 1, 0, 1]), 2, True)
    dims = {"n_features": 5, "n_labels": 6}
    return {
        "flat_default": dims | {"hidden_size": 256},  # the default when the fixtures were written
        "flat_all": dims
        | dict(
            hidden_size=8,
            doc_size=12,
            label_embed_size=4,
            dropout=0.3,
            aux_weight=0.1,
            input_dropout=0.2,
            tree_beam=3,
        ),
        "tree": dims
        | dict(hidden_size=8, output="tree", tree=tree, tree_beam=3, tree_query_size=4, sparse_label_grads=True),
        "bcl": dims | dict(hidden_size=8, n_clusters=3, guidance_weight=0.5, guidance_anneal=True, guidance_mix=0.25),
        "bcl_nomix": dims | dict(hidden_size=8, n_clusters=3),
        "mcg": dims | dict(hidden_size=8, mcg=mcg),
    }


OLD_CONFIGS = json.loads((FIXTURES / "configs.json").read_text())


@pytest.mark.parametrize("name", sorted(OLD_CONFIGS))
def test_saved_config_is_the_old_dict_key_for_key(name):
    policy = ChainPolicy(**cases()[name])
    assert json.dumps(policy.config) == json.dumps(OLD_CONFIGS[name])  # same keys, order and values


@pytest.mark.parametrize("name", sorted(OLD_CONFIGS))
def test_round_trip_through_dict_and_json(name):
    config = PolicyConfig.from_dict(OLD_CONFIGS[name])
    assert config.to_dict() == OLD_CONFIGS[name]
    again = PolicyConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert ChainPolicy.from_config(config).config == OLD_CONFIGS[name]


def test_fields_are_typed_after_from_dict():
    tree_config = PolicyConfig.from_dict(OLD_CONFIGS["tree"])
    assert tree_config.tree is not None and tree_config.tree.n_labels == 6
    assert (tree_config.tree_branching, tree_config.tree_leaf_size) == (2, 2)  # read off the built tree
    mcg_config = PolicyConfig.from_dict(OLD_CONFIGS["mcg"])
    assert isinstance(mcg_config.mcg, MCGSpec) and mcg_config.mcg.restrict is True
    assert mcg_config.mcg.membership.toarray().tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]


def test_unbuilt_tree_config_round_trips_its_build_knobs():
    config = PolicyConfig(output="tree", tree_branching=4, tree_leaf_size=8, tree_beam=2)
    data = config.to_dict()
    assert (data["tree_branching"], data["tree_leaf_size"], "tree" in data) == (4, 8, False)
    assert PolicyConfig.from_dict(data) == config
    assert PolicyConfig.from_dict(data).tree_leaf_size == 8


def test_unknown_key_is_named():
    with pytest.raises(TypeError, match="hidden_sise"):
        PolicyConfig.from_dict({"n_features": 3, "n_labels": 2, "hidden_sise": 4})


@pytest.mark.parametrize("name", ["flat_all", "tree", "bcl", "mcg"])
def test_policy_folders_saved_before_policy_config_load_with_the_same_outputs(name):
    expected = json.loads((FIXTURES / "expected.json").read_text())
    policy = ChainPolicy.load(FIXTURES / name).eval()
    assert policy.config == OLD_CONFIGS[name]
    X = np.asarray(expected["X"], dtype=np.float32)
    with torch.no_grad():
        logits, values = policy.prefix_logits(X, torch.tensor(expected["history"]))
    np.testing.assert_allclose(logits.numpy(), expected["outputs"][name]["logits"], atol=1e-5)
    np.testing.assert_allclose(values.numpy(), expected["outputs"][name]["values"], atol=1e-5)


def test_saving_writes_the_old_file_byte_for_byte(tmp_path):
    for name in ("flat_all", "tree", "bcl", "mcg"):
        ChainPolicy.load(FIXTURES / name).save(tmp_path / name)
        assert (tmp_path / name / "policy_config.json").read_bytes() == (
            FIXTURES / name / "policy_config.json"
        ).read_bytes()

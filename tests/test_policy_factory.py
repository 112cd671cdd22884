"""`build_policy`: the one factory gives the weights a hand-built policy had (flat, tree, BCL, MCG,
presets), reads what the split decides, and refuses a split that does not fit the config."""

import numpy as np
import pytest
import torch

from labelchain.agents.guidance import with_gold_clusters
from labelchain.agents.mcg import mcg_setup
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.envs.label_clusters import build_label_tree, pifa_embeddings
from labelchain.experiments.run.presets import PRESETS
from labelchain.experiments.run.config import TrainKnobs


def same_weights(a: ChainPolicy, b: ChainPolicy) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_flat_is_the_hand_built_policy_normalised_on_train(tiny_dataset):
    train = tiny_dataset.train
    torch.manual_seed(3)
    built = build_policy(PolicyConfig(hidden_size=8), train)
    torch.manual_seed(3)
    by_hand = ChainPolicy(3, 4, hidden_size=8).fit_input_normalization(train.X)
    assert same_weights(built, by_hand)
    assert (built.n_features, built.n_labels) == (3, 4)
    assert not torch.equal(built.input_scale, torch.ones(3))  # fitted on train, not the identity


def test_tree_is_built_from_pifa_of_train_with_the_seed(tiny_dataset):
    train = tiny_dataset.train
    config = PolicyConfig(hidden_size=8, output="tree", tree_branching=2, tree_leaf_size=1, tree_beam=2)
    torch.manual_seed(0)
    built = build_policy(config, train, seed=5)
    tree = build_label_tree(pifa_embeddings(train.X, train.Y), 2, 1, seed=5)
    assert built.policy_config.tree is not None
    assert built.policy_config.tree.to_dict() == tree.to_dict()
    torch.manual_seed(0)
    by_hand = ChainPolicy(3, 4, hidden_size=8, output="tree", tree=tree, tree_beam=2)
    assert same_weights(built, by_hand.fit_input_normalization(train.X))
    assert built.config["tree_beam"] == 2 and "tree_branching" not in built.config  # saved as before


def test_bcl_reads_text_features_apart_from_gold_cluster_columns(tiny_dataset):
    train = with_gold_clusters(tiny_dataset.train, np.array([0, 1, 0, 1]), 2)
    assert train.X.shape[1] == 5
    policy = build_policy(PolicyConfig(hidden_size=8, n_clusters=2), train)
    assert policy.n_features == 3 and policy.guidance is not None and policy.guidance.n_clusters == 2
    with pytest.raises(ValueError, match="5 feature columns, the config wants 4 features"):
        build_policy(PolicyConfig(n_features=4, hidden_size=8, n_clusters=2), train)


def test_mcg_needs_the_augmented_split(tiny_dataset):
    kwargs, augmented = mcg_setup(tiny_dataset.train, 2, seed=0)
    policy = build_policy(PolicyConfig(**kwargs, hidden_size=8), augmented)
    assert policy.n_labels == 6 and policy.label_columns == 4
    with pytest.raises(ValueError, match="6 columns\\), the split has 4"):
        build_policy(PolicyConfig(hidden_size=8, mcg=kwargs["mcg"]), tiny_dataset.train)


def test_without_a_split_the_config_must_be_complete():
    with pytest.raises(ValueError, match="needs n_features, n_labels"):
        build_policy(PolicyConfig(hidden_size=8), None)
    policy = build_policy(PolicyConfig(3, 4, hidden_size=8), None)
    assert torch.equal(policy.input_scale, torch.ones(3))  # nothing to normalise on


def test_preset_and_flags_give_one_architecture(tiny_dataset):
    paper = PRESETS["paper"].policy
    assert (paper.hidden_size, paper.label_embed_size, paper.dropout, paper.input_dropout, paper.aux_weight) == (
        1024,
        256,
        0.3,
        0.2,
        0.1,
    )
    args = TrainKnobs(
        preset="paper",
        hidden_size=16,
        dropout=0.25,
        output="flat",
        tree_branching=16,
        tree_leaf_size=100,
        tree_beam=10,
        tree_query_size=None,
        sparse_label_grads=False,
        guidance="bcl",
        clusters=2,
        guidance_weight=0.5,
        guidance_anneal=False,
        guidance_mix=0.0,
    )
    config = args.to_policy_config()
    assert config.to_dict() == {
        "n_features": 0,
        "n_labels": 0,
        "hidden_size": 16,
        "doc_size": 16,
        "label_embed_size": 256,
        "dropout": 0.25,
        "aux_weight": 0.1,
        "input_dropout": 0.2,
        "n_clusters": 2,
        "guidance_weight": 0.5,
        "guidance_anneal": False,
    }

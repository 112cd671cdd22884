"""`build_policy`: the one way scripts, grids and benchmarks get a fresh `ChainPolicy`.

The config says the architecture (`agents.policy_config.PolicyConfig`); the training split fills in
what it decides: the dimensions, the label tree (PIFA embeddings -> balanced tree, seeded), and the
input normalisation. Guidance is part of the config and of the split: BCL (`n_clusters` > 0) reads a
split that carries its gold cluster columns (`agents.guidance.with_gold_clusters`), MCG (`mcg`) a
split whose labels are followed by their clusters (`agents.mcg.mcg_setup` / `MCGSpec.augment_split`).
Presets give their architecture as `experiments.run.presets.PRESETS[name].policy` (a preset is a `Config`).

Seeding stays with the caller (`torch.manual_seed` before the call), so the weights a script drew
before the factory existed are the weights it draws now. Rebuilding a *saved* policy is
`ChainPolicy.from_config` / `ChainPolicy.load`, not this.
"""

from __future__ import annotations

from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.envs.data.dataset import Split
from labelchain.envs.label_clusters import LabelTree, build_label_tree, pifa_embeddings

__all__ = ["build_policy", "label_tree", "resolve_config"]


def build_policy(config: PolicyConfig, train: Split | None, *, seed: int = 0) -> ChainPolicy:
    """Fresh weights of `config` over `train`, input normalisation fitted on it.

    `train` None (benchmarks on synthetic inputs): the config gives the dimensions and any tree, and
    the inputs stay unnormalised. `seed` seeds only the label tree's k-means.
    """
    policy = ChainPolicy.from_config(resolve_config(config, train, seed=seed))
    return policy if train is None else policy.fit_input_normalization(train.X)


def resolve_config(config: PolicyConfig, train: Split | None, *, seed: int = 0) -> PolicyConfig:
    """`config` with what `train` decides filled in: n_features (text columns: a BCL split's gold
    cluster columns and a prior split's prior columns are not features), n_labels (an MCG split: labels + clusters) and the tree."""
    if train is None:
        if config.n_features < 1 or config.n_labels < 1 or (config.output == "tree" and config.tree is None):
            raise ValueError(
                "build_policy without a training split needs n_features, n_labels and any tree in the config"
            )
        return config
    n_labels = config.n_labels or int(train.Y.shape[1])
    extra = config.n_clusters + (n_labels if config.prior != "none" else 0)  # gold cluster or prior columns
    n_features = config.n_features or int(train.X.shape[1]) - extra
    if train.X.shape[1] != n_features + extra:
        raise ValueError(
            f"build_policy: the training split has {train.X.shape[1]} feature columns, the config wants "
            f"{n_features} features + {extra} gold cluster or prior columns"
        )
    if config.mcg is not None and train.Y.shape[1] != config.mcg.n_actions:
        raise ValueError(
            f"build_policy: an MCG policy trains on labels + cluster tokens ({config.mcg.n_actions} columns), "
            f"the split has {train.Y.shape[1]} (augment it with MCGSpec.augment_split)"
        )
    tree = config.tree
    if config.output == "tree" and tree is None:
        tree = label_tree(train, n_features, config.tree_branching, config.tree_leaf_size, seed)
    return config.replace(n_features=n_features, n_labels=n_labels, tree=tree)


def label_tree(train: Split, n_features: int, branching: int, leaf_size: int, seed: int = 0) -> LabelTree:
    """The balanced label tree of the PIFA embeddings of `train`'s first `n_features` columns."""
    X = train.X if n_features == train.X.shape[1] else train.X[:, :n_features]
    return build_label_tree(pifa_embeddings(X, train.Y), branching, leaf_size, seed=seed)

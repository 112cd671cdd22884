"""labelchain environments layer: datasets (the `envs.data` sub-package), metrics, rewards, label orderings, Gymnasium envs.

Importing `envs` registers ``LabelChain-v0`` (single env, with a native vector entry point).
"""

from gymnasium.envs.registration import register, registry

from labelchain.envs.data import DATASET_NAMES, Dataset, Split, load_dataset
from labelchain.envs.label_env import LabelChainEnv
from labelchain.envs.vector_env import LabelChainVectorEnv

ENV_ID = "LabelChain-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="labelchain.envs.label_env:LabelChainEnv",
        vector_entry_point="labelchain.envs.vector_env:LabelChainVectorEnv",
    )

__all__ = [
    "DATASET_NAMES",
    "ENV_ID",
    "Dataset",
    "LabelChainEnv",
    "LabelChainVectorEnv",
    "Split",
    "load_dataset",
]

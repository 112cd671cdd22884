"""labelchain's environments layer: datasets (the `labelchain.envs.data` sub-package), metrics, rewards,
label orderings, the Gymnasium envs.

Light on import: the names below load their module on first use (PEP 562), so
`import labelchain.envs.metrics` pulls in neither Gymnasium nor torch. ``LabelChain-v0`` is registered
by `labelchain` itself (see `labelchain.envs.registration`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

ENV_ID = "LabelChain-v0"

_LAZY = {
    "DATASET_NAMES": "labelchain.envs.data.loading",
    "load_dataset": "labelchain.envs.data.loading",
    "Dataset": "labelchain.envs.data.dataset",
    "Split": "labelchain.envs.data.dataset",
    "LabelChainEnv": "labelchain.envs.label_env",
    "LabelChainVectorEnv": "labelchain.envs.vector_env",
}

if TYPE_CHECKING:
    from labelchain.envs.data.dataset import Dataset, Split
    from labelchain.envs.data.loading import DATASET_NAMES, load_dataset
    from labelchain.envs.label_env import LabelChainEnv
    from labelchain.envs.vector_env import LabelChainVectorEnv


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labelchain.envs' has no attribute {name!r}")


__all__ = ["DATASET_NAMES", "ENV_ID", "Dataset", "LabelChainEnv", "LabelChainVectorEnv", "Split", "load_dataset"]

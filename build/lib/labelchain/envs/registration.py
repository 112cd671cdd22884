"""``LabelChain-v0`` in Gymnasium's registry: the single env, with the native vector env as its vector entry point.

Called by `labelchain/__init__.py` once Gymnasium is imported, so `gym.make("LabelChain-v0")` works
after `import labelchain` and importing the rest of `labelchain.envs` never pulls in Gymnasium.
"""

from gymnasium.envs.registration import register, registry

from labelchain.envs import ENV_ID


def register_envs() -> None:
    """Register ``LabelChain-v0`` (idempotent)."""
    if ENV_ID not in registry:
        register(
            id=ENV_ID,
            entry_point="labelchain.envs.label_env:LabelChainEnv",
            vector_entry_point="labelchain.envs.vector_env:LabelChainVectorEnv",
        )

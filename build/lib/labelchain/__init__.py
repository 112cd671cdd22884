"""labelchain: multi-label classification with learned, context-dependent label orderings.

The installed namespace. Its sub-packages live in the repository's top-level folders (the design
card's layout): `labelchain.envs` is envs/, `labelchain.agents` is agents/, `labelchain.experiments`
is experiments/ (this folder holds links to them, so an install, mypy and pytest all see one tree).

Importing `labelchain` stays light (no gymnasium, no torch): ``LabelChain-v0`` is registered with
Gymnasium as soon as Gymnasium itself is imported, before or after this package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__version__ = "0.1.0"


def _register() -> None:
    from labelchain.envs.registration import register_envs

    register_envs()


class _RegisterAfterGymnasium(importlib.abc.MetaPathFinder):
    """Registers the envs right after `gymnasium` finishes importing (a one-shot post-import hook)."""

    def find_spec(
        self, name: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register()

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


if "gymnasium" in sys.modules:
    _register()
elif not any(isinstance(finder, _RegisterAfterGymnasium) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterGymnasium())

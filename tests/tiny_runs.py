"""The tiny train_rl run the end-to-end tests share: emotions, small batches and network, validation
and checkpoints every few updates, no progress bar; each test module changes what it is about."""

from __future__ import annotations

from typing import Any

from labelchain.experiments.run.train_rl_args import Args

TINY_RUN: dict[str, Any] = {
    "dataset": "emotions",
    "learners": ["freq2rare", "rearrange", "combined"],
    "ensemble": ["rearrange", "combined"],
    "updates": 4,
    "batch_size": 32,
    "hidden_size": 16,
    "eval_every": 2,
    "checkpoint_every": 2,
    "progress": False,
}


def tiny_train_rl_args(**changes: Any) -> Args:
    """train_rl Args of the tiny run, with `changes` on top."""
    return Args(**{**TINY_RUN, **changes})

"""Quality of a (partial) label chain against the gold set, shared by both LabelChain environments.

Both environments track, per episode, the counts tp = |P ∩ G|, |P| and |G| of the emitted set P and
the gold set G; every supported reward is a function of those three counts alone, so the single and
the vector environment compute the very same numbers (scalars or arrays alike).
"""

from __future__ import annotations

import numpy as np

REWARDS = ("f1", "jaccard", "subset_accuracy")
REWARD_MODES = ("terminal", "delta")
# The one default of every env, learner and script: per-step differences give the policy credit for
# each label as it is emitted (the published runs used it; terminal was within seed noise, ablations).
DEFAULT_REWARD_MODE = "delta"


def chain_quality(tp, n_pred, n_gold, reward: str = "f1"):
    """Quality of an emitted set with `tp` hits, `n_pred` labels, against `n_gold` gold labels.

    Edge case: an empty prediction for a document without gold labels scores 1 under every reward
    (it is exactly right); an empty prediction for a document with gold labels scores 0.
    Works elementwise on numpy arrays; returns float64 (array or scalar).
    """
    tp = np.asarray(tp, dtype=np.float64)
    n_pred = np.asarray(n_pred, dtype=np.float64)
    n_gold = np.asarray(n_gold, dtype=np.float64)
    if reward == "f1":
        num, den = 2.0 * tp, n_pred + n_gold
    elif reward == "jaccard":
        num, den = tp, n_pred + n_gold - tp
    elif reward == "subset_accuracy":
        return ((tp == n_pred) & (tp == n_gold)).astype(np.float64)
    else:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    return np.where(den > 0, num / np.maximum(den, 1.0), 1.0)


def check_reward_args(reward: str, reward_mode: str) -> None:
    """Fail early, naming the argument, rather than at the first step."""
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")

"""The supervised pieces every learner shares: the teacher-forcing loss and the validation carve.

Teacher forcing trains on a whole minibatch of target sequences (padded into a (B, T) tensor) in one
pass of `policy.sequence_joint` and the output layer; fixed orderings, target rearrangement and the combined objective
all use this one loss (agents.learners).
"""
from __future__ import annotations

import numpy as np
import torch

from agents.policy import ChainPolicy
from envs.data.dataset import Split


def teacher_forcing_loss(
    policy: ChainPolicy, X_batch, targets: torch.Tensor, *, mask_emitted: bool = True
) -> torch.Tensor:
    """Mean cross-entropy over the non-padding positions of `targets` (B, T; STOP-terminated, -1 pad).

    With `mask_emitted`, labels earlier in the same target sequence are excluded from each softmax,
    the same masking the decoders apply, so training and decoding see one distribution.
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=policy.input_weight.device)
    joint, _ = policy.sequence_joint(X_batch, targets)
    log_p, _ = policy.output.sequence_log_probs(joint, targets, mask_emitted=mask_emitted, with_entropy=False)
    present = targets >= 0
    return -log_p.sum() / present.sum().clamp(min=1)


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Random (train, validation) partition of `split`; the validation part has round(n * fraction) rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(split)
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"cannot carve {fraction:.0%} of {n} documents into a non-empty validation split")
    perm = np.random.default_rng(seed).permutation(n)
    return split.subset(np.sort(perm[n_val:])), split.subset(np.sort(perm[:n_val]))

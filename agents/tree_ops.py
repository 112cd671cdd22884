"""Tensor helpers of the tree-factored output layer (agents.output_layers.TreeOutput): padded sibling
tables, per-row candidate scores, log-softmax within groups and over masked candidates.

Kept apart so that the layer file reads as the model; these are plain functions of tensors/arrays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NEG_INF = float("-inf")
DENSE_FACTOR = 4  # score all R rows of a level with one GEMM when R <= DENSE_FACTOR x candidates per row


def padded_groups(parent: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of each group as a (n_groups, width) matrix padded with -1, and each member's rank."""
    counts = np.bincount(parent, minlength=n_groups)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(parent)) - first[parent]
    table = np.full((n_groups, int(counts.max())), -1, dtype=np.int64)
    table[parent, rank] = np.arange(len(parent))
    return table, rank


def gathered_scores(
    joint: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, ids: torch.Tensor, sparse: bool = False
) -> torch.Tensor:
    """Row n's scores (N, C) for its own candidates ids[n]: weight[ids[n, c]] · joint[n] + bias.

    Two exact ways, picked by cost: gathering each row's candidate weights moves N·C·J floats, one
    GEMM over all R weight rows does N·R·J multiply-adds but several times faster per element; so
    small label spaces / upper levels take the GEMM, large ones the gather (F.embedding, faster on
    CPU than advanced indexing). `sparse` (label tables of a sparse_label_grads policy) always
    gathers while gradients are recorded, so that only the rows used receive (sparse) gradients.
    """
    sparse = sparse and torch.is_grad_enabled()
    if not sparse and weight.shape[0] <= DENSE_FACTOR * ids.shape[1]:
        return torch.addmm(bias[:, 0], joint, weight.T).gather(1, ids)
    rows = F.embedding(ids, weight, sparse=sparse)  # (N, C, J)
    return torch.bmm(rows, joint[:, :, None]).squeeze(2) + F.embedding(ids, bias, sparse=sparse).squeeze(2)


def group_log_softmax(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Log-softmax of `scores` (N, n) within each group (rows of `groups`, -1 padded)."""
    gathered = scores[:, groups.clamp(min=0)].masked_fill(groups < 0, NEG_INF)
    log_p = torch.log_softmax(gathered, dim=-1)
    out = torch.empty_like(scores)
    valid = groups >= 0
    out[:, groups[valid]] = log_p[:, valid]
    return out


def masked_log_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-softmax over allowed entries; a row with none allowed (only reached past a STOP, whose
    values are discarded) gets a uniform distribution instead of NaNs."""
    none = ~allowed.any(dim=-1, keepdim=True)
    return torch.log_softmax(scores.masked_fill(~allowed & ~none, NEG_INF), dim=-1)


def masked_entropy(log_p: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p.masked_fill(~allowed, 0.0)).sum(dim=-1)

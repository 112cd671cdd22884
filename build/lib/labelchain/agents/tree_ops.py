"""Tensor helpers of the tree-factored output layer (agents.tree_output.TreeOutput): padded sibling
tables, per-row candidate scores, log-softmax within groups and over masked candidates.

Kept apart so that the layer file reads as the model; these are plain functions of tensors/arrays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

NEG_INF = float("-inf")
# Cost of one candidate score, in units of one row x one weight row inside a GEMM: gathering a
# weight row (or a copy of it) and a lone dot product cost about this many GEMM dot products on one
# CPU thread (measured 60-120x for J = 512 with AVX-512; the lower end is taken).
GATHER_COST = 64


def padded_groups(parent: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of each group as a (n_groups, width) matrix padded with -1, and each member's rank."""
    counts = np.bincount(parent, minlength=n_groups)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(parent)) - first[parent]
    table = np.full((n_groups, int(counts.max())), -1, dtype=np.int64)
    table[parent, rank] = np.arange(len(parent))
    return table, rank


SCORE_WAYS = ("dense", "union", "gather")


def score_way(n_rows: int, n_candidates: int, n_table: int, n_union: int, sparse: bool) -> str:
    """The cheapest of SCORE_WAYS for N rows x C candidates from a table of R rows, U of them distinct.

    Costs in GEMM dot products: dense N·R, union GATHER_COST·U + N·U, gather GATHER_COST·N·C. A sparse
    table (gradients recorded) never takes the dense way: every row would receive a gradient entry.
    """
    costs = {"union": (GATHER_COST + n_rows) * n_union, "gather": GATHER_COST * n_rows * n_candidates}
    if not sparse:
        costs["dense"] = n_rows * n_table
    return min(costs, key=costs.__getitem__)


def gathered_scores(
    joint: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    ids: torch.Tensor,
    sparse: bool = False,
    way: str | None = None,
) -> torch.Tensor:
    """Row n's scores (N, C) for its own candidates ids[n]: weight[ids[n, c]] · joint[n] + bias.

    Three exact ways (SCORE_WAYS), picked by `score_way` unless `way` names one, because a GEMM
    computes a dot product far faster than a gather moves the weight row it needs:
      * dense: one GEMM against all R weight rows, then pick each row's candidates;
      * union: gather the U distinct candidate rows of the whole batch once, one GEMM against them,
        then pick; rows of a decoding batch share most of their candidate clusters, so U is far below
        N·C (e.g. 2,600 distinct of 50,000 leaf candidates at L = 100,000, 200 documents, beam 10);
      * gather: each row's own candidate rows, then a batched dot product (wins when rows share few
        candidates, e.g. teacher forcing with one path per position).
    `sparse` (label tables of a sparse_label_grads policy) counts only while gradients are recorded:
    then only the rows used receive (sparse) gradients.
    """
    sparse = sparse and torch.is_grad_enabled()
    (N, C), R = ids.shape, weight.shape[0]
    if way is not None and way not in SCORE_WAYS:
        raise ValueError(f"way must be one of {SCORE_WAYS}, got {way!r}")
    if way == "dense" and sparse:
        raise ValueError("way='dense' would give every row of a sparse table a gradient")
    union = position = None
    if way is None and (sparse or R > C):
        seen = torch.zeros(R, dtype=torch.bool, device=ids.device)
        seen[ids] = True
        union = seen.nonzero().squeeze(1)
    if way is None:
        way = "dense" if union is None else score_way(N, C, R, union.shape[0], sparse)
    if way == "dense":
        return torch.addmm(bias[:, 0], joint, weight.T).gather(1, ids)
    if way == "union":
        if union is None:
            union = torch.unique(ids)
        position = torch.empty(R, dtype=torch.long, device=ids.device)
        position[union] = torch.arange(union.shape[0], device=ids.device)
        rows = F.embedding(union, weight, sparse=sparse)  # (U, J)
        scores = torch.addmm(F.embedding(union, bias, sparse=sparse)[:, 0], joint, rows.T)
        return scores.gather(1, position[ids])
    rows = F.embedding(ids, weight, sparse=sparse)  # (N, C, J)
    return torch.bmm(rows, joint[:, :, None]).squeeze(2) + F.embedding(ids, bias, sparse=sparse).squeeze(2)


def history_counts(groups: torch.Tensor, group_of: torch.Tensor, position_of: torch.Tensor, width: int) -> torch.Tensor:
    """(N, K, width) count of row n's history items (N, T) that sit in group groups[n, k] (their
    `group_of`, -1 for padding) at member position `position_of`: O(N·K·T) comparisons, not the
    O(N·K·width·T) of comparing every member of every group with every history item."""
    N, K = groups.shape
    n, k, t = ((groups[:, :, None] == group_of[:, None, :]) & (group_of[:, None, :] >= 0)).nonzero(as_tuple=True)
    counts = torch.zeros(N, K, width, dtype=torch.long, device=groups.device)
    return counts.index_put_((n, k, position_of[n, t]), torch.ones_like(n), accumulate=True)


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

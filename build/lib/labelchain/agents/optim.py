"""The learners' optimiser: Adam, plus lazy SparseAdam for label-indexed weights with sparse gradients.

Why: at 100,000 labels a dense Adam step over the L x (hidden + doc) label weights and the L x E
label embeddings costs more than the whole forward and backward pass of a tree-factored policy
(77% of a teacher-forcing step, measured). A policy built with `sparse_label_grads=True` produces
sparse gradients for those tables (only the rows a batch touched); SparseAdam then updates only those
rows' moments ("lazy Adam"), so a step costs O(rows touched) instead of O(L). Without sparse
gradients this is AdamW over all parameters (= Adam at weight decay 0), fused into one kernel over
all parameters: measured 4x faster steps than the default on CPU at hidden 512-1024. SparseAdam has no
weight decay, so the sparse tables are not decayed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class AdamWithSparse:
    """AdamW over the dense parameters and SparseAdam over `sparse` ones, stepped together."""

    def __init__(
        self, dense: list[nn.Parameter], sparse: list[nn.Parameter], lr: float, weight_decay: float = 0.0
    ) -> None:
        self.dense = _adamw(dense, lr, weight_decay)
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.dense.param_groups + self.sparse.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.dense.step()
        self.sparse.step()

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dense.load_state_dict(state["dense"])
        self.sparse.load_state_dict(state["sparse"])


def make_optimizer(policy: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW | AdamWithSparse:
    """AdamW, or AdamW + SparseAdam when the policy declares sparse-gradient parameters."""
    sparse_ids = {id(p) for p in getattr(policy, "sparse_parameters", list)()}
    if not sparse_ids:
        return _adamw(list(policy.parameters()), lr, weight_decay)
    params = list(policy.parameters())
    return AdamWithSparse(
        [p for p in params if id(p) not in sparse_ids], [p for p in params if id(p) in sparse_ids], lr, weight_decay
    )


def _adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


def clip_grad_norm(parameters, max_norm: float) -> float:
    """`torch.nn.utils.clip_grad_norm_` that also accepts sparse gradients (which it does not)."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    norms = [(p.grad.coalesce().values() if p.grad.is_sparse else p.grad).norm() for p in params]
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad.mul_(coef)
    return float(total)

"""The supervised pieces every learner shares: the teacher-forcing loss and the validation carve.

Teacher forcing trains on a whole minibatch of target sequences (padded into a (B, T) tensor) in one
pass of `policy.sequence_hidden` and the output layer; fixed orderings, target rearrangement and the combined objective
all use this one loss (agents.learners).
"""

from __future__ import annotations

import numpy as np
import torch

from labelchain.agents.fused import fused_applies, fused_teacher_forcing_loss
from labelchain.agents.policy import ChainPolicy
from labelchain.agents import shortlist_step
from labelchain.envs.data.dataset import Split


def teacher_forcing_loss(
    policy: ChainPolicy,
    X_batch,
    targets: torch.Tensor | np.ndarray,
    *,
    mask_emitted: bool = True,
    fused: bool = True,
    compact: bool = True,
) -> torch.Tensor:
    """Mean cross-entropy over the non-padding positions of `targets` (B, T; STOP-terminated, -1 pad).

    With `mask_emitted`, labels earlier in the same target sequence are excluded from each softmax,
    the same masking the decoders apply, so training and decoding see one distribution. The GRU runs
    packed (padding costs no recurrent work; most of a batch is padding when label-set sizes vary).
    `fused` (default): agents.fused's pass, the same loss to float rounding at about half the FLOPs;
    False keeps the `nn.GRU` pass (the benchmark's baseline). `compact` (default): a shortlisting prior
    policy scores each position's shortlist only, O(M) not O(L) (agents.shortlist_step), the same loss
    to float rounding.
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=policy.input_weight.device)
    present = targets >= 0
    if fused and fused_applies(policy):
        log_p_sum, doc = fused_teacher_forcing_loss(
            policy, X_batch, targets, mask_emitted=mask_emitted, compact=compact
        )
    else:
        outputs, doc = policy.sequence_hidden(X_batch, policy.previous_labels(targets), present.sum(dim=1))
        joint, _ = policy.joint_inputs(outputs, doc)
        log_p, _ = shortlist_step.sequence_log_probs(
            policy, joint, targets, X_batch, compact=compact, mask_emitted=mask_emitted, with_entropy=False
        )
        log_p_sum = log_p.sum()
    loss = -log_p_sum / present.sum().clamp(min=1)
    if policy.label_head is not None:  # the head reads the same encoding (one encoder pass, one dropout mask)
        loss = loss + policy.aux_weight * aux_label_loss(policy, X_batch, targets, doc=doc)
    return loss


def aux_label_loss(
    policy: ChainPolicy, X_batch, targets: torch.Tensor, doc: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of the auxiliary head, summed over labels and averaged over documents.

    The labels of a target sequence are the document's gold set (fixed orders contain it all, and a
    rearranged target appends the missed gold labels), so the targets are all this loss needs.
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=policy.input_weight.device)
    gold = torch.zeros(targets.shape[0], policy.n_labels + 1, device=targets.device)
    gold.scatter_(1, torch.where(targets >= 0, targets, policy.n_labels), 1.0)  # STOP, padding -> column L
    if doc is None:
        logits = policy.aux_logits(X_batch)
    else:  # reuse the encoding the teacher-forcing pass made
        assert policy.label_head is not None, "aux_label_loss needs a policy with an auxiliary head"
        logits = policy.label_head(doc)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.float(), gold[:, : policy.n_labels], reduction="sum"
    )
    return bce / max(1, targets.shape[0])


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

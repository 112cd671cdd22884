"""What one chain step hands between the decoders and an output layer (agents.output_layers): the
`Choice` made for a batch and the trackers of labels already emitted (dense mask or history).

Kept apart so that the flat and the tree layer (agents.tree_output) share them without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Choice:
    """One step for a batch: action (B,), its log-prob and the entropy it was drawn with, whether
    STOP beats every label when STOP is not suppressed (greedy set lengths use it), and the layer's
    `first_step_probs` of the same state when `choose` was asked for them (`with_first_probs`)."""

    action: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    natural_stop: torch.Tensor
    first_probs: torch.Tensor | None = None


@dataclass
class DocPrior:
    """A prior policy's per-document part (agents.prior_columns): logit offsets `bias` (B, L + 1; STOP's
    is the policy's `stop_offset`) added to every step's logits, and with a shortlist `blocked` (B, L + 1 bool): the labels
    outside the document's shortlist, never emitted (the STOP column is False)."""

    bias: torch.Tensor
    blocked: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> DocPrior:
        return DocPrior(self.bias[rows], None if self.blocked is None else self.blocked[rows])


class FlatEmitted:
    """Labels a chain may no longer emit as a dense (B, L + 1) mask (the STOP column stays False):
    those it emitted, and a prior policy's labels outside the shortlist, blocked from the start.
    `bias`: the prior's per-document logit offsets, which the flat layer adds to its logits."""

    def __init__(self, mask: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.mask = mask
        self.bias = bias

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        newly = (active & (action != stop_id) & (action >= 0)).nonzero().squeeze(1)
        self.mask[newly, action[newly]] = True

    def select(self, rows: torch.Tensor) -> FlatEmitted:
        return FlatEmitted(self.mask[rows].clone(), None if self.bias is None else self.bias[rows])


class HistoryEmitted:
    """Emitted labels as a (B, T) history padded with -1: memory grows with the chain, not with L."""

    def __init__(self, history: torch.Tensor) -> None:
        self.history = history

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        keep = active & (action != stop_id) & (action >= 0)
        self.history = torch.cat([self.history, torch.where(keep, action, -1)[:, None]], dim=1)

    def select(self, rows: torch.Tensor) -> HistoryEmitted:
        return HistoryEmitted(self.history[rows])


class ShortlistEmitted:
    """Per chain its shortlisted labels and what it may no longer emit, in shortlist columns.

    ids (B, M + 1): the shortlisted label ids ascending, padding = the STOP id, STOP last; bias
    (B, M + 1): the prior's offsets a * prior + b of those labels (0 for padding; STOP: the policy's stop_offset); mask
    (B, M + 1) bool: blocked columns (padding and labels emitted); the STOP column stays False.
    """

    def __init__(self, ids: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor, n_labels: int) -> None:
        self.ids, self.bias, self.mask, self.n_labels = ids, bias, mask, n_labels

    @property
    def stop_column(self) -> int:
        return self.ids.shape[1] - 1

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        hit = (self.ids[:, :-1] == action[:, None]) & (active & (action != stop_id))[:, None]
        self.mask[:, :-1] |= hit

    def select(self, rows: torch.Tensor) -> ShortlistEmitted:
        return ShortlistEmitted(self.ids[rows], self.bias[rows], self.mask[rows].clone(), self.n_labels)

    def sparse_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Label probabilities over the shortlist columns (B, M) -> a coalesced sparse COO (B, L)."""
        labels = self.ids[:, :-1]
        rows, columns = (labels != self.n_labels).nonzero(as_tuple=True)
        index = torch.stack([rows, labels[rows, columns]])
        return torch.sparse_coo_tensor(
            index, probs[rows, columns], (labels.shape[0], self.n_labels), check_invariants=False
        ).coalesce()  # valid by construction: ids are distinct within a row

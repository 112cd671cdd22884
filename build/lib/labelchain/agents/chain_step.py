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


class FlatEmitted:
    """Emitted labels as a dense (B, L + 1) mask (the STOP column stays False)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        newly = (active & (action != stop_id) & (action >= 0)).nonzero().squeeze(1)
        self.mask[newly, action[newly]] = True

    def select(self, rows: torch.Tensor) -> FlatEmitted:
        return FlatEmitted(self.mask[rows].clone())


class HistoryEmitted:
    """Emitted labels as a (B, T) history padded with -1: memory grows with the chain, not with L."""

    def __init__(self, history: torch.Tensor) -> None:
        self.history = history

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        keep = active & (action != stop_id) & (action >= 0)
        self.history = torch.cat([self.history, torch.where(keep, action, -1)[:, None]], dim=1)

    def select(self, rows: torch.Tensor) -> HistoryEmitted:
        return HistoryEmitted(self.history[rows])

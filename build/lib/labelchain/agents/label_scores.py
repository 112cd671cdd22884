"""Decoded chains -> what the metrics read: label sets (bool CSR) and ranking scores (dense (B, L)).

Pure conversions, kept apart from the decoders (agents.decoding) that produce the chains and call them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def labels_to_csr(labels: torch.Tensor | np.ndarray, n_labels: int, lengths=None) -> sp.csr_matrix:
    """Padded label sequences (B, T) -> bool CSR (B, L); only the first `lengths[i]` labels if given."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    keep = labels >= 0
    if lengths is not None:
        lengths = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths)
        keep &= np.arange(labels.shape[1])[None, :] < lengths[:, None]
    rows, cols = np.nonzero(keep)
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=bool), (rows, labels[rows, cols])), shape=(labels.shape[0], n_labels)
    )


def position_scores(labels: torch.Tensor, n_labels: int, first_probs: torch.Tensor | None = None) -> np.ndarray:
    """Ranking scores (B, L): emitted at position p of T -> T - p; never emitted -> p_first - 1 (or -1)."""
    labels_np = labels.cpu().numpy()
    B, T = labels_np.shape
    scores = np.full((B, n_labels), -1.0, dtype=np.float32)
    if first_probs is not None and first_probs.is_sparse:  # coalesced: each (row, label) once
        index, values = first_probs.cpu().indices().numpy(), first_probs.cpu().values().numpy()
        scores[index[0], index[1]] += values.astype(np.float32)
    elif first_probs is not None:
        scores += first_probs.cpu().numpy().astype(np.float32)
    rows, cols = np.nonzero(labels_np >= 0)
    scores[rows, labels_np[rows, cols]] = (T - cols).astype(np.float32)
    return scores


def marginal_counts_to_scores(counts: np.ndarray, n_samples: int, tiebreak: np.ndarray) -> np.ndarray:
    """(count + tiebreak / 2) / n_samples: the share of sampled chains that emitted each label, ties
    (equal counts) broken by `tiebreak` in [0, 1] without ever overturning a count."""
    return ((counts + 0.5 * np.clip(tiebreak, 0.0, 1.0)) / n_samples).astype(np.float32)

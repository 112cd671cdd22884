"""Code only the tests use, kept out of the library: a sampled decoder, TensorBoard curves as lists,
and PECOS' label-copy mapping of overlapping clusters (the pipeline uses cluster membership,
`envs.label_overlap.membership_matrix`; the copy layout of `assign_overlapping` is checked here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import DecodeResult, rollout
from labelchain.agents.policy import ChainPolicy
from labelchain.envs.label_overlap import OverlappingLabels
from labelchain.experiments.run.folder import scalar_events


def sample_decode(
    policy: ChainPolicy,
    X,
    *,
    max_steps: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """Chains sampled from the policy (ancestral sampling, STOP allowed at every step)."""
    return rollout(policy, X, max_steps=max_steps, sample=True, temperature=temperature, generator=generator)


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar curves of one event folder as {tag: [(step, value), ...]}, purges applied."""
    return {tag: [(event.step, event.value) for event in events] for tag, events in scalar_events(log_dir).items()}


def _label_csr(Y, n_labels: int, name: str) -> sp.csr_matrix:
    csr = sp.csr_matrix(Y, dtype=bool)
    if csr.shape[1] != n_labels:
        raise ValueError(f"{name} must have shape (n, {n_labels}), got {csr.shape}")
    return csr


def expand_labels(Y, overlap: OverlappingLabels) -> sp.csr_matrix:
    """(n, L') training targets over the columns: every copy carries its label's documents."""
    return _label_csr(Y, overlap.n_labels, "Y")[:, overlap.column_label].tocsr()


def collapse_scores(scores: np.ndarray, overlap: OverlappingLabels) -> np.ndarray:
    """(n, L') column scores -> (n, L) label scores, the best score of each label's copies."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != overlap.column_label.size:
        raise ValueError(f"scores must have shape (n, {overlap.column_label.size}), got {arr.shape}")
    out = arr[:, : overlap.n_labels].copy()
    if overlap.n_copies:
        np.maximum.at(out.T, overlap.column_label[overlap.n_labels :], arr[:, overlap.n_labels :].T)  # out.T: a view
    return out


def collapse_sets(Y_pred, overlap: OverlappingLabels) -> sp.csr_matrix:
    """(n, L') predicted columns -> (n, L) bool label sets: a label is in if any copy is."""
    pred = _label_csr(Y_pred, overlap.column_label.size, "Y_pred").astype(np.int64)
    size = overlap.column_label.size
    to_label = sp.csr_matrix(
        (np.ones(size, dtype=np.int64), (np.arange(size), overlap.column_label)), shape=(size, overlap.n_labels)
    )
    out = (pred @ to_label).astype(bool).tocsr()
    out.eliminate_zeros()
    return out

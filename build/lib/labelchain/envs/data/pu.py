"""The positive-unlabelled (PU) setting: hide part of each training document's labels.

Real annotations miss labels; XLGen evaluates on training data with some labels hidden and the full
test labels. `hide_labels` makes such a training label matrix, seeded, so every learner of a run sees
the same hidden labels.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp


def hide_labels(Y: np.ndarray | sp.spmatrix | sp.sparray, fraction: float, seed: int) -> sp.csr_matrix:
    """Bool CSR copy of `Y` (n, L) with about `fraction` of each document's labels removed.

    A document with m labels loses h = floor(fraction * m + u) of them, u ~ U[0, 1) (stochastic
    rounding: h is exact when fraction * m is an integer and right on average otherwise), but always
    keeps at least one; which labels go is uniform at random. Documents without labels stay empty.
    Same (Y, fraction, seed) -> same result; `Y` is not modified.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction (--hide-train-labels) must be a number in [0, 1], got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    gold = sp.csr_matrix(Y, dtype=bool, copy=True)
    if gold.ndim != 2:
        raise ValueError(f"Y must be 2-D (n, L), got shape {gold.shape}")
    gold.eliminate_zeros()
    gold.sort_indices()
    rng = np.random.default_rng(seed)
    sizes = np.diff(gold.indptr)
    n_hide = np.floor(float(fraction) * sizes + rng.random(sizes.size)).astype(np.int64)
    n_hide = np.minimum(n_hide, np.maximum(sizes - 1, 0))
    rows = np.repeat(np.arange(sizes.size), sizes)
    order = np.lexsort((rng.random(gold.nnz), rows))  # a random order of the labels within each row
    rank = np.arange(gold.nnz) - gold.indptr[rows[order]]
    keep = np.ones(gold.nnz, dtype=bool)
    keep[order[rank < n_hide[rows[order]]]] = False
    kept_sizes = np.bincount(rows[keep], minlength=sizes.size)
    indptr = np.concatenate(([0], np.cumsum(kept_sizes)))
    return sp.csr_matrix((np.ones(int(keep.sum()), dtype=bool), gold.indices[keep], indptr), shape=gold.shape)

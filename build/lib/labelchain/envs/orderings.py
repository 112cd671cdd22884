"""The four fixed label orderings that the supervised baselines teach a chain to emit.

A chain model needs its gold label *set* written as a *sequence*; which sequence it sees is the
baseline's whole identity (frequent-first, rare-first, one random order, a fresh random order each
time). Every ordering here sorts each document's labels by a per-label (or per-entry) key, so the
work is one `np.lexsort` over all documents at once, with no Python loop over documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ORDERINGS = ("freq2rare", "rare2freq", "fixed_random", "always_random")


def _check_name(ordering: str) -> None:
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")


def _flatten(label_lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-document label arrays into (flat labels, CSR-style indptr)."""
    lengths = np.fromiter((len(labels) for labels in label_lists), dtype=np.int64, count=len(label_lists))
    indptr = np.zeros(len(label_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = (
        np.concatenate([np.asarray(labels, dtype=np.int64) for labels in label_lists])
        if len(label_lists)
        else np.zeros(0, dtype=np.int64)
    )
    return flat, indptr


def frequency_rank(label_freq: np.ndarray, descending: bool) -> np.ndarray:
    """Rank of every label by frequency (0 = emitted first); equal frequencies go by label id."""
    freq = np.asarray(label_freq, dtype=np.int64)
    ids = np.arange(len(freq))
    order = np.lexsort((ids, -freq if descending else freq))
    rank = np.empty(len(freq), dtype=np.int64)
    rank[order] = ids
    return rank


class LabelOrdering:
    """One ordering for a whole run: `fixed_random` draws its permutation once, at construction.

    `always_random` keeps its own generator `rng` (seeded here), so two runs with the same seed see
    the same sequence of shuffles; every call to `order` draws fresh ones. Checkpoints save
    `rng.bit_generator.state` so a resumed run continues the same shuffles.
    """

    def __init__(self, name: str, label_freq: np.ndarray, seed: int = 0) -> None:
        _check_name(name)
        self.name = name
        self.n_labels = len(label_freq)
        self.rng = np.random.default_rng(seed)
        self._rank: np.ndarray | None
        if name == "freq2rare":
            self._rank = frequency_rank(label_freq, descending=True)
        elif name == "rare2freq":
            self._rank = frequency_rank(label_freq, descending=False)
        elif name == "fixed_random":
            permutation = self.rng.permutation(self.n_labels)
            self._rank = np.empty(self.n_labels, dtype=np.int64)
            self._rank[permutation] = np.arange(self.n_labels)
        else:
            self._rank = None

    @property
    def rank(self) -> np.ndarray | None:
        """Position of each label in the global order (None for `always_random`)."""
        return None if self._rank is None else self._rank.copy()

    def order_flat(self, flat: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        """Reorder CSR-style (flat labels, indptr) within each document; returns the new flat array."""
        flat = np.asarray(flat, dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_labels):
            raise ValueError(f"label ids must lie in [0, {self.n_labels}), got {flat.min()}..{flat.max()}")
        doc_of_entry = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        keys = self.rng.random(flat.size) if self._rank is None else self._rank[flat]
        return flat[np.lexsort((keys, doc_of_entry))]

    def order(self, label_lists: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each document's labels as a sequence in this ordering."""
        flat, indptr = _flatten(label_lists)
        ordered = self.order_flat(flat, indptr)
        return [ordered[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]


def order_labels(
    label_lists: Sequence[np.ndarray],
    ordering: str | LabelOrdering,
    label_freq: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """One-shot form of `LabelOrdering.order`.

    With a name, the random orderings draw from `rng` (a Generator or seed): `fixed_random` then
    uses one permutation for every document *of this call*; to keep it fixed across calls (a whole
    training run) pass a `LabelOrdering` object instead.
    """
    if isinstance(ordering, LabelOrdering):
        return ordering.order(label_lists)
    _check_name(ordering)
    if label_freq is None:
        raise ValueError(f"ordering {ordering!r} given by name needs label_freq")
    seed = rng if isinstance(rng, int | None) else int(rng.integers(2**63 - 1))
    return LabelOrdering(ordering, label_freq, seed=0 if seed is None else seed).order(label_lists)

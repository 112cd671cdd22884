"""Target sequences for teacher forcing: padding, fixed orderings and target rearrangement.

Target rearrangement (the model picks its own order): keep the gold labels a sampled chain emitted,
in the chain's order, drop its wrong labels, append the gold labels it missed in random order, then
STOP. Everything works on flat arrays for the whole batch (one lexsort), numpy only.

`lead_from` (MCG, agents.mcg): ids >= lead_from (cluster tokens) form a leading part; fixed orders
and rearrangement order each part on its own and put the leading part first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from labelchain.envs.orderings import LabelOrdering

PAD = -1


def pad_sequences(flat: np.ndarray, lengths: np.ndarray, stop_id: int | None) -> np.ndarray:
    """(flat labels, per-row lengths) -> (B, T) int64 padded with -1, with `stop_id` appended if given."""
    flat = np.asarray(flat, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = 0 if stop_id is None else 1
    width = int(lengths.max(initial=0)) + extra
    out = np.full((len(lengths), max(width, 1 if extra else 0)), PAD, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    cols = np.arange(flat.size) - np.repeat(starts, lengths)
    out[rows, cols] = flat
    if stop_id is not None:
        out[np.arange(len(lengths)), lengths] = stop_id
    return out


def _part(ids: np.ndarray, lead_from: int | None) -> np.ndarray:
    """0 for ids of the leading part (>= lead_from), 1 for the rest (all 0 without a leading part)."""
    return np.zeros(ids.shape, np.int8) if lead_from is None else (ids < lead_from).astype(np.int8)


def ordered_targets(Y_rows: sp.csr_matrix, ordering: LabelOrdering, lead_from: int | None = None) -> np.ndarray:
    """Padded teacher-forcing targets (B, T) for gold rows `Y_rows` in a fixed ordering, STOP last
    (with `lead_from`, the ids >= lead_from first, each part in the ordering)."""
    Y_rows = sp.csr_matrix(Y_rows)
    flat = ordering.order_flat(Y_rows.indices, Y_rows.indptr)
    if lead_from is not None:
        lengths = np.diff(Y_rows.indptr)
        docs = np.repeat(np.arange(len(lengths)), lengths)
        flat = flat[np.lexsort((np.arange(flat.size), _part(flat, lead_from), docs))]
    return pad_sequences(flat, np.diff(Y_rows.indptr), stop_id=Y_rows.shape[1])


def _rearranged_flat(
    sampled: np.ndarray, gold: sp.csr_matrix, rng: np.random.Generator, lead_from: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Core of rearrangement: (flat target labels without STOP, lengths) for the whole batch."""
    sampled = np.asarray(sampled, dtype=np.int64)
    B, T = sampled.shape
    L = gold.shape[1]
    if gold.shape[0] != B:
        raise ValueError(f"{B} sampled chains but {gold.shape[0]} gold label rows")
    gold_dense = np.zeros((B, L), dtype=bool)
    gold_rows = np.repeat(np.arange(B), np.diff(gold.indptr))
    gold_dense[gold_rows, gold.indices] = True
    is_label = (sampled >= 0) & (sampled < L)  # STOP / padding are not labels
    safe = np.where(is_label, sampled, 0)
    kept = is_label & gold_dense[np.arange(B)[:, None], safe]
    emitted = np.zeros((B, L), dtype=bool)
    emitted[np.nonzero(is_label)[0], sampled[is_label]] = True
    kept_doc, kept_pos = np.nonzero(kept)
    missed_doc, missed_label = np.nonzero(gold_dense & ~emitted)
    docs = np.concatenate([kept_doc, missed_doc])
    labels = np.concatenate([sampled[kept_doc, kept_pos], missed_label])
    keys = np.concatenate([kept_pos.astype(np.float64), T + rng.random(missed_doc.size)])
    order = np.lexsort((keys, _part(labels, lead_from), docs))
    return labels[order], np.bincount(docs, minlength=B)


def rearranged_target_matrix(
    sampled: np.ndarray, gold: sp.csr_matrix, rng: np.random.Generator, lead_from: int | None = None
) -> np.ndarray:
    """Padded (B, T') rearranged targets with STOP (= number of labels) after each row's labels
    (with `lead_from`, each part rearranged on its own, the ids >= lead_from first)."""
    flat, lengths = _rearranged_flat(sampled, sp.csr_matrix(gold), rng, lead_from)
    return pad_sequences(flat, lengths, stop_id=gold.shape[1])


def rearranged_targets(
    sampled_seqs: np.ndarray | Sequence[Sequence[int]],
    gold_label_lists: Sequence[np.ndarray],
    n_labels: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Rearranged target sequence of each document, ending with STOP (= n_labels).

    `sampled_seqs` is a (B, T) array padded with -1 (STOP entries are ignored) or a list of label
    lists; a chain never repeats a label (the decoders guarantee it).
    """
    if not isinstance(sampled_seqs, np.ndarray):
        sampled_seqs = pad_sequences(
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sampled_seqs]) if len(sampled_seqs) else [],
            np.array([len(s) for s in sampled_seqs], dtype=np.int64),
            stop_id=None,
        )
    lengths = np.array([len(g) for g in gold_label_lists], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = (
        np.concatenate([np.asarray(g, dtype=np.int64) for g in gold_label_lists])
        if len(gold_label_lists)
        else np.zeros(0, np.int64)
    )
    gold = sp.csr_matrix((np.ones(len(indices), bool), indices, indptr), shape=(len(lengths), n_labels))
    flat, target_lengths = _rearranged_flat(sampled_seqs, gold, rng)
    stop = np.array([n_labels], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(target_lengths)])
    return [np.concatenate([flat[starts[i] : starts[i + 1]], stop]) for i in range(len(target_lengths))]

"""A peer's scores as a chain's prior: out-of-fold on training, top-M per document, kept sparse.

A peer fitted on the training documents has seen them, so its scores there are overconfident; a
chain trained on them would learn to trust the prior too much. So the training part is cross-fitted:
k folds (seeded, `fold_assignment`), each scored by the peer fitted on the other k - 1 folds.
Validation and test are scored by the peer fitted on the whole training part, with the settings
`agents.peers.tune_peer` chose on validation; the same settings are used inside every fold.

Scores are kept in the form the chain adds to its logits: log-odds log(p / (1 - p)) for one-vs-rest
logistic regression, the log of Omikuji's score for Omikuji, clipped to [FLOOR, -FLOOR] with
FLOOR = log(1e-6) (about -13.8), so a certain 0 or 1 stays finite. Per document only the M best
labels are stored (CSR, explicit entries; ties to the lower label id), so memory is O(n M), not
O(n L); every label not stored is at FLOOR (`PriorScores.dense`). Scoring runs in document chunks
sized by a memory budget (`score_chunk_rows`, SCORE_BLOCK_BYTES), so a dense (chunk x L) block is
the most the peer's scores ever take; a one-point grid is fitted without tune_peer's dense
validation scoring (there is nothing to choose). Omikuji is asked for M labels with
a beam of max(M, 10) (`_with_top_k`); it never returns a label absent from its training documents,
so its rows can hold fewer than M.

`PriorScores.check` refuses a prior built on another dataset (content hash), another split (seed,
validation fraction, row counts) or another label count, with one line naming the mismatch;
`check_shortlist` refuses a shortlist size outside [1, L]. File I/O (the cache) lives in
experiments/prior_cache.py: agents never read files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelchain.agents.peers import Scorer, TunedPeer, _make, tune_peer
from labelchain.agents.prior_columns import FLOOR, PRIOR_PEERS
from labelchain.envs.shortlist import shortlist_from_scores
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Dataset, Features, Split
from labelchain.envs.data.fingerprint import HASH_CHARS, content_hash, splits_digest

SCORE_KINDS = {"ovr_logistic": "log_odds", "omikuji": "log_score"}
DEFAULT_FOLDS = 5
DEFAULT_TOP_M = 100
SPLIT_FIELDS = ("seed", "val_fraction", "n_train", "n_val", "n_test", "parts_hash")
SCORE_BLOCK_BYTES = 64 * 2**20  # one dense (chunk x L) float64 block of `score_top_m`


class PriorMismatch(ValueError):
    """A prior that does not belong to the data, split or label space it is used with."""


# ----------------------------------------------------------------------------- identities
def split_identity(train: Split, val: Split, test: Split, *, seed: int, val_fraction: float) -> dict[str, Any]:
    """What names the three parts a prior was built on: the carving settings, row counts and contents."""
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "parts_hash": splits_digest({"train": train, "val": val, "test": test})[:HASH_CHARS],
    }


def prior_identity(ds: Dataset, train: Split, val: Split, *, seed: int, val_fraction: float) -> dict[str, Any]:
    """What `PriorScores.check` compares, for the data a chain is about to train on:
    `prior.check(**prior_identity(ds, train, val, seed=seed, val_fraction=val_fraction))`."""
    return {
        "dataset_hash": content_hash(ds),
        "split": split_identity(train, val, ds.test, seed=seed, val_fraction=val_fraction),
        "n_labels": ds.n_labels,
    }


def check_shortlist(m: int, n_labels: int) -> int:
    """`m` when 1 <= m <= n_labels; a one-line error otherwise."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= n_labels:
        raise PriorMismatch(f"shortlist size M={m!r} must be a whole number in [1, {n_labels}] (the label count)")
    return int(m)


# ----------------------------------------------------------------------------- the scores
@dataclass
class PriorScores:
    """Top-M prior scores of the chains' train (out-of-fold), validation and test parts."""

    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix
    peer: str
    settings: dict[str, Any]  # hyper (tuned), top_m, folds, seed, grid, score kind, floor
    dataset_hash: str
    split: dict[str, Any]
    n_labels: int
    timings: dict[str, float] = field(default_factory=dict)

    def part(self, name: str) -> sp.csr_matrix:
        if name not in ("train", "val", "test"):
            raise ValueError(f"prior part must be train, val or test, got {name!r}")
        return getattr(self, name)

    def dense(self, name: str) -> np.ndarray:
        """(n, L) float32 with every label not stored at the floor (small L only: O(n L) memory)."""
        return to_dense(self.part(name), float(self.settings["floor"]))

    def check(self, *, dataset_hash: str, split: dict[str, Any], n_labels: int) -> None:
        """Raise PriorMismatch (one line) unless this prior was built on that dataset, split and label count."""
        if dataset_hash != self.dataset_hash:
            raise PriorMismatch(
                f"prior ({self.peer}) was built on dataset {self.dataset_hash}, not on this one ({dataset_hash})"
            )
        if n_labels != self.n_labels:
            raise PriorMismatch(f"prior ({self.peer}) has {self.n_labels} labels, the data has {n_labels}")
        named = list(SPLIT_FIELDS) + sorted((set(split) | set(self.split)) - set(SPLIT_FIELDS))
        for key in named:  # the carving settings before the content hash they imply
            if split.get(key) != self.split.get(key):
                raise PriorMismatch(
                    f"prior ({self.peer}) was built on another split: {key} {self.split.get(key)!r}, here {split.get(key)!r}"
                )


def to_dense(scores: sp.csr_matrix, floor: float = FLOOR) -> np.ndarray:
    """Stored entries as they are (explicit zeros included), every other label at `floor`."""
    out = np.full(scores.shape, floor, dtype=np.float32)
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    out[rows, scores.indices] = scores.data
    return out


def log_scores(raw: np.ndarray, kind: str) -> np.ndarray:
    """Peer scores in the chain's units, clipped to [FLOOR, -FLOOR]; -inf marks a label the peer did not
    return (Omikuji's unranked labels, score 0), which top-M never keeps."""
    raw = np.asarray(raw, dtype=np.float64)
    eps = math.exp(FLOOR)
    if kind == "log_odds":
        p = np.clip(raw, eps, 1.0 - eps)
        return np.log(p) - np.log1p(-p)
    if kind == "log_score":
        out = np.full(raw.shape, -np.inf)
        returned = raw > 0
        out[returned] = np.clip(np.log(np.clip(raw[returned], eps, None)), FLOOR, -FLOOR)
        return out
    if kind == "raw":
        return raw
    raise ValueError(f"score kind must be log_odds, log_score or raw, got {kind!r}")


def top_m(scores: np.ndarray, m: int) -> sp.csr_matrix:
    """The `m` highest finite scores of every row (ties to the lower label id) as float32 CSR with
    explicit entries, columns ascending within a row."""
    n, L = scores.shape
    m = min(m, L)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :m].copy()  # the (n, L) argsort is freed here
    order.sort(axis=1)  # columns ascending within a row, as CSR keeps them
    values = np.take_along_axis(scores, order, axis=1)
    keep = np.isfinite(values)
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
    return sp.csr_matrix((values[keep].astype(np.float32), order[keep], indptr), shape=(n, L))


def score_chunk_rows(n_labels: int, budget_bytes: int = SCORE_BLOCK_BYTES) -> int:
    """Documents `score_top_m` scores at once so that one dense float64 (chunk x L) block fits in
    `budget_bytes` (at least one document). The peer's float32 scores, their log and the argsort of one
    chunk take a few such blocks at once, so peak memory is a few budgets whatever n and L
    (measured: experiments/bench/bench_prior_memory.py, docs/prior-scale.md)."""
    return max(1, int(budget_bytes) // (8 * max(1, int(n_labels))))


def score_top_m(
    scorer: Scorer, X: Features, kind: str, m: int, *, n_labels: int, chunk_rows: int | None = None
) -> sp.csr_matrix:
    """Score `X` in row chunks (`chunk_rows`, default `score_chunk_rows(n_labels)`) and keep each
    document's top `m` in the chain's units: only O(n m) outlives a chunk."""
    chunk_rows = score_chunk_rows(n_labels) if chunk_rows is None else chunk_rows
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    blocks = [
        top_m(log_scores(scorer.scores(X[start : start + chunk_rows]), kind), m)
        for start in range(0, X.shape[0], chunk_rows)
    ]
    return sp.csr_matrix(sp.vstack(blocks, format="csr")) if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


# ----------------------------------------------------------------------------- cross-fitting
def fold_assignment(n: int, folds: int, seed: int) -> np.ndarray:
    """Fold id (0..folds-1) of each of `n` rows: a seeded permutation cut into `folds` near-equal parts
    (sizes differ by at most one)."""
    if folds < 2 or folds > n:
        raise ValueError(f"folds must be in [2, {n}] (the training documents), got {folds}")
    assignment = np.empty(n, dtype=np.int64)
    for fold, rows in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        assignment[rows] = fold
    return assignment


def out_of_fold(
    make: Callable[[], Scorer],
    train: Split,
    assignment: np.ndarray,
    convert: Callable[[Scorer, Features], sp.csr_matrix],
) -> sp.csr_matrix:
    """Rows of fold f scored by `make()` fitted on every other fold, through `convert(scorer, X)`."""
    if assignment.shape != (len(train),):
        raise ValueError(f"fold assignment has {assignment.size} entries for {len(train)} documents")
    blocks, rows = [], []
    for fold in np.unique(assignment):
        inside = np.flatnonzero(assignment == fold)
        scorer = make().fit(train.subset(np.flatnonzero(assignment != fold)))
        blocks.append(sp.csr_matrix(convert(scorer, train.X[inside])))
        rows.append(inside)
    stacked = sp.csr_matrix(sp.vstack(blocks, format="csr"))
    back = np.empty(len(train), dtype=np.int64)
    back[np.concatenate(rows)] = np.arange(len(train))
    return sp.csr_matrix(stacked[back])


def _with_top_k(scorer: Scorer, m: int) -> Scorer:
    """Omikuji returns only its top_k labels, and only from the leaves its beam reaches: with the
    default beam of 10 it returns about 10 labels a document whatever top_k is (measured on enron:
    10.6 of 53; beam 100: all 52 seen in training). So top_k = beam = max(M, its defaults)."""
    if hasattr(scorer, "top_k"):
        scorer.top_k = max(m, 5)  # type: ignore[attr-defined]
        scorer.beam_size = max(m, 10)  # type: ignore[attr-defined]
    return scorer


def build_prior(
    peer: str,
    ds: Dataset,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    folds: int = DEFAULT_FOLDS,
    top_m_size: int = DEFAULT_TOP_M,
    grid: tuple[dict, ...] | None = None,
) -> PriorScores:
    """Tune `peer` on the chains' validation slice, score val/test with it and train out-of-fold.
    Raises agents.peers.PeerUnavailable when Omikuji is missing."""
    import time

    if peer not in PRIOR_PEERS:
        raise ValueError(f"prior peer must be one of {PRIOR_PEERS}, got {peer!r}")
    m = check_shortlist(top_m_size, ds.n_labels)
    train, val = carve_validation(ds.train, val_fraction, seed)
    kind = SCORE_KINDS[peer]
    started = time.perf_counter()
    if grid is not None and len(grid) == 1:  # nothing to choose: skip tune_peer's dense (n_val x L) scoring
        hyper, scorer = dict(grid[0]), _make(peer, dict(grid[0]), seed).fit(train)
    else:
        tuned: TunedPeer = tune_peer(peer, train, val, seed=seed, grid=grid)
        hyper, scorer = dict(tuned.hyper), tuned.scorer
    tuned_at = time.perf_counter()
    convert = lambda scorer, X: score_top_m(_with_top_k(scorer, m), X, kind, m, n_labels=ds.n_labels)  # noqa: E731
    val_scores, test_scores = convert(scorer, val.X), convert(scorer, ds.test.X)
    assignment = fold_assignment(len(train), folds, seed)
    train_scores = out_of_fold(lambda: _make(peer, dict(hyper), seed), train, assignment, convert)
    settings = {
        "hyper": hyper,
        "grid": [dict(h) for h in grid] if grid is not None else None,
        "top_m": m,
        "folds": folds,
        "seed": seed,
        "val_fraction": val_fraction,
        "score_kind": kind,
        "floor": FLOOR,
    }
    return PriorScores(
        train=train_scores,
        val=val_scores,
        test=test_scores,
        peer=peer,
        settings=settings,
        dataset_hash=content_hash(ds),
        split=split_identity(train, val, ds.test, seed=seed, val_fraction=val_fraction),
        n_labels=ds.n_labels,
        timings={"tune_s": tuned_at - started, "total_s": time.perf_counter() - started},
    )


def recall_at(scores: sp.csr_matrix, Y: sp.csr_matrix, m: int) -> float:
    """Micro recall of the shortlist: gold labels among each document's `m` best stored labels / all gold
    labels (envs.shortlist.shortlist_from_scores: ties to the lower label id)."""
    if scores.shape != Y.shape:
        raise PriorMismatch(f"scores have shape {scores.shape}, labels {Y.shape}")
    gold = int(Y.nnz)
    if gold == 0:
        return math.nan
    Y = sp.csr_matrix(Y, dtype=bool)
    return int(Y.multiply(shortlist_from_scores(scores, m)).nnz) / gold

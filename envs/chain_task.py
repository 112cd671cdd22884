"""What both LabelChain environments share: the documents, the step cap and the spaces.

Building the task once (data resolved, step cap fixed, spaces defined) is what guarantees that the
single and the vector environment describe the same problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from gymnasium import spaces

from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.mcg import MCGSpec
from labelchain.envs.rewards import DEFAULT_REWARD_MODE, check_reward_args
from labelchain.envs.shortlist import check_shortlist_matrix

SPLITS = ("train", "test")
DENSIFY_BYTES = 256 * 2**20  # sparse splits up to this dense size are kept dense for fast gathers


@dataclass
class ChainTask:
    """One split of a dataset seen as label-chain episodes (one document = one episode)."""

    split: Split
    n_labels: int
    max_steps: int
    reward: str = "f1"
    reward_mode: str = DEFAULT_REWARD_MODE
    name: str = ""
    mcg: MCGSpec | None = None  # MCG: actions L..L+C-1 are cluster tokens (envs.mcg); rewards count labels only
    # (n_docs, L) bool: the labels each document may emit (envs.shortlist); None: every label
    shortlist: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        check_reward_args(self.reward, self.reward_mode)
        if self.shortlist is not None:
            if self.mcg is not None:
                raise ValueError("shortlist: not with mcg (cluster tokens have no shortlist); pass one or the other")
            self.shortlist = check_shortlist_matrix(self.shortlist, len(self.split), self.n_labels)
        if self.mcg is not None and not self.n_labels == self.split.Y.shape[1] == self.mcg.n_actions:
            raise ValueError(
                f"mcg: the task needs n_labels and label columns = {self.mcg.n_labels} labels + "
                f"{self.mcg.n_clusters} clusters (an augmented split), got {self.n_labels} and {self.split.Y.shape[1]}"
            )
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        X: Any = self.split.X  # dense array or CSR
        self.is_sparse = sp.issparse(X)
        # Dense rows are gathered far faster than CSR rows are sliced; densify when that is cheap.
        if self.is_sparse and X.shape[0] * X.shape[1] * 4 <= DENSIFY_BYTES:
            self._dense = X.toarray()
        else:
            self._dense = None if self.is_sparse else X
        values = X.data if self.is_sparse else X
        self.feature_low = float(min(0.0, values.min(initial=0.0)))
        self.feature_high = float(max(1.0, values.max(initial=1.0)))
        Y = self.split.Y
        self.gold_indptr = Y.indptr.astype(np.int64)
        self.gold_count = np.diff(self.gold_indptr)
        # One sorted int64 key doc * L + label per gold pair (CSR rows are sorted, so the keys are):
        # membership is a binary search, memory O(nnz), never a dense (N, L) row.
        docs = np.repeat(np.arange(len(self.split), dtype=np.int64), self.gold_count)
        self.gold_keys = docs * self.n_labels + Y.indices.astype(np.int64)
        self.shortlist_keys: np.ndarray | None = None  # the same sorted keys for the shortlist's pairs
        if self.shortlist is not None:
            S = self.shortlist
            rows = np.repeat(np.arange(S.shape[0], dtype=np.int64), np.diff(S.indptr))
            self.shortlist_keys = rows * self.n_labels + S.indices.astype(np.int64)
        # What the reward scores: actions below `scored_labels` (all of them, or MCG's labels).
        self.scored_labels = self.n_labels if self.mcg is None else self.mcg.n_labels
        self.scored_gold_count = (
            self.gold_count if self.mcg is None else np.diff(Y[:, : self.scored_labels].indptr).astype(np.int64)
        )

    @property
    def n_docs(self) -> int:
        return len(self.split)

    @property
    def n_features(self) -> int:
        return int(np.shape(self.split.X)[1])

    @property
    def stop_action(self) -> int:
        return self.n_labels

    def features(self, docs: np.ndarray) -> np.ndarray:
        """Dense float32 feature rows of documents `docs`."""
        if self._dense is not None:
            return self._dense[docs]
        X: Any = self.split.X
        return X[docs].toarray()

    def is_gold(self, docs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Whether label `labels[i]` is a gold label of document `docs[i]` (bool array), in O(log nnz)."""
        return self._member(self.gold_keys, docs, labels)

    def in_shortlist(self, docs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Whether label `labels[i]` is in document `docs[i]`'s shortlist (all True without one), O(log nnz)."""
        if self.shortlist_keys is None:
            return np.ones(np.shape(labels), dtype=bool)
        return self._member(self.shortlist_keys, docs, labels)

    def shortlist_rows(self, docs: np.ndarray) -> sp.csr_matrix | None:
        """The shortlist rows of documents `docs` (for `envs.shortlist.allowed_actions`), None without one."""
        return None if self.shortlist is None else self.shortlist[np.asarray(docs, dtype=np.int64)]

    def _member(self, sorted_keys: np.ndarray, docs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Whether each (doc, label) pair's key is in `sorted_keys` (bool array), by binary search."""
        keys = np.asarray(docs, dtype=np.int64) * self.n_labels + np.asarray(labels, dtype=np.int64)
        if len(sorted_keys) == 0:
            return np.zeros(keys.shape, dtype=bool)
        where = np.searchsorted(sorted_keys, keys)
        found = sorted_keys[np.minimum(where, len(sorted_keys) - 1)] == keys
        return found & (where < len(sorted_keys))

    def observation_space(self) -> spaces.Dict:
        """Features (dense row), emitted-label history (L marks an empty slot), step index."""
        return spaces.Dict(
            {
                "features": spaces.Box(self.feature_low, self.feature_high, (self.n_features,), np.float32),
                "history": spaces.MultiDiscrete(np.full(self.max_steps, self.n_labels + 1)),
                "step": spaces.Discrete(self.max_steps + 1),
            }
        )

    def action_space(self) -> spaces.Discrete:
        return spaces.Discrete(self.n_labels + 1)


def default_max_steps(train_max_labels: int, n_labels: int) -> int:
    """A little above the largest training label set: room for every label plus STOP, and 2 spare."""
    return min(n_labels, train_max_labels + 2) + 1


def make_task(
    dataset: str | Path | Dataset | ChainTask,
    split: str = "train",
    *,
    reward: str = "f1",
    reward_mode: str = DEFAULT_REWARD_MODE,
    max_steps: int | None = None,
    data_dir: str | Path | None = None,
    mcg: MCGSpec | None = None,
    shortlist: Any = None,
) -> ChainTask:
    """Resolve a dataset (name, path or `Dataset`) and one of its splits into a `ChainTask`; a
    `ChainTask` is returned as it is (the environments accept either). With `mcg`, the split's labels
    are augmented with their clusters (`MCGSpec.augment`) and cluster tokens become actions. With
    `shortlist` ((split rows, L), `envs.shortlist`), each document may emit only its shortlisted labels."""
    if isinstance(dataset, ChainTask):
        if mcg is not None and dataset.mcg is not mcg:
            raise ValueError("mcg: a ready ChainTask carries its own mcg; build it with ChainTask(..., mcg=...)")
        if shortlist is not None and dataset.shortlist is not shortlist:
            raise ValueError(
                "shortlist: a ready ChainTask carries its own shortlist; build it with ChainTask(..., shortlist=...)"
            )
        return dataset
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(dataset, Dataset):
        from labelchain.envs.data.loading import load_dataset  # deferred: parsing is only needed for names/paths

        dataset = load_dataset(dataset, data_dir)
    chosen, n_labels, most = getattr(dataset, split), dataset.n_labels, dataset.max_labels_per_doc
    if mcg is not None:
        chosen, n_labels = mcg.augment_split(chosen), mcg.n_actions
        most = mcg.augment_split(dataset.train).max_labels_per_doc
    if max_steps is None:
        max_steps = default_max_steps(most, n_labels)
    return ChainTask(
        split=chosen,
        n_labels=n_labels,
        max_steps=int(max_steps),
        reward=reward,
        reward_mode=reward_mode,
        name=f"{dataset.name}/{split}",
        mcg=mcg,
        shortlist=shortlist,
    )

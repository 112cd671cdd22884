"""In-memory form of a multi-label dataset, shared by every layer of labelchain.

Every loader (ARFF, extreme-classification text, LIBSVM, Reuters SGML) ends in a `Dataset`, so the
environments, learners and metrics never care where the data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp

Features: TypeAlias = np.ndarray | sp.csr_matrix


@dataclass
class Split:
    """One split: features `X` (float32, dense ndarray or CSR) and labels `Y` (bool CSR, n x L).

    X is a dense ndarray only for ARFF datasets whose rows are all dense (emotions, scene, yeast);
    sparse ARFF rows, XC/LIBSVM text and Reuters TF-IDF give CSR. Consumers accept both, and the
    type carries meaning: `agents.features.input_normalization` z-scores dense features only.
    """

    X: Features
    Y: sp.csr_matrix

    def __post_init__(self) -> None:
        if self.X.shape[0] != self.Y.shape[0]:
            raise ValueError(f"X has {self.X.shape[0]} rows but Y has {self.Y.shape[0]}")
        if sp.issparse(self.X):
            self.X = sp.csr_matrix(self.X, dtype=np.float32)
        else:
            self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        self.Y = sp.csr_matrix(self.Y, dtype=bool)
        self.Y.sort_indices()

    def __len__(self) -> int:
        return self.X.shape[0]

    def subset(self, rows: np.ndarray) -> "Split":
        """Rows `rows` of this split (e.g. a validation slice carved from train)."""
        return Split(self.X[rows], self.Y[rows])

    @property
    def label_freq(self) -> np.ndarray:
        """Number of documents carrying each label, int64 of shape (L,)."""
        return np.asarray(self.Y.sum(axis=0)).ravel().astype(np.int64)

    @property
    def max_labels_per_doc(self) -> int:
        return int(np.diff(self.Y.indptr).max(initial=0))

    def label_lists(self) -> list[np.ndarray]:
        """Gold label ids of each document, sorted ascending."""
        Y = self.Y
        return [Y.indices[Y.indptr[i] : Y.indptr[i + 1]] for i in range(Y.shape[0])]


@dataclass
class Dataset:
    """A train/test pair over one label space; `label_freq` counts training documents per label."""

    name: str
    train: Split
    test: Split
    label_names: list[str]
    feature_names: list[str] = field(default_factory=list)
    source: str = ""
    # What the loader did beyond parsing (JSON-able): "notes" (human-readable lines: dropped or
    # one-hot encoded attributes, a split it made) and "split" (the options of a seeded split).
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_labels = len(self.label_names)
        for split_name, split in (("train", self.train), ("test", self.test)):
            if split.Y.shape[1] != n_labels:
                raise ValueError(
                    f"{self.name}: {split_name}.Y has {split.Y.shape[1]} columns, but there are {n_labels} label names"
                )
        if self.train.X.shape[1] != self.test.X.shape[1]:
            raise ValueError(f"{self.name}: train and test have different feature counts")

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def n_features(self) -> int:
        return self.train.X.shape[1]

    @property
    def label_freq(self) -> np.ndarray:
        """Number of training documents carrying each label, int64 of shape (L,)."""
        return self.train.label_freq

    @property
    def max_labels_per_doc(self) -> int:
        return self.train.max_labels_per_doc

    def stats(self) -> dict[str, float]:
        """Sizes as the data README's table gives them."""
        return {
            "train": len(self.train),
            "test": len(self.test),
            "labels": self.n_labels,
            "features": self.n_features,
            "labels_per_doc": float(self.train.Y.sum() + self.test.Y.sum()) / max(1, len(self.train) + len(self.test)),
        }

"""Document features as torch inputs for the policy's encoder, without densifying sparse text.

Reuters TF-IDF has ~20k columns and bibtex 1,836 binary ones with a few dozen non-zeros per row, so
CSR rows become (indices, offsets, weights) for `F.embedding_bag` (a sparse matrix product), while
dense features (emotions, scene, SB3 observations) stay a dense tensor for a plain matmul. Both
forms use the same weight matrix, so they give the same encoding for the same document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


@dataclass
class DocFeatures:
    """A batch of documents: either `dense` (B, F) or the CSR triple (`indices`, `offsets`, `weights`)."""

    n_rows: int
    n_features: int
    dense: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "DocFeatures":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DocFeatures(
            self.n_rows, self.n_features, move(self.dense), move(self.indices), move(self.offsets), move(self.weights)
        )


def doc_features(X_rows, device: torch.device | str | None = None) -> DocFeatures:
    """Wrap rows of X (dense ndarray, scipy sparse, torch tensor or DocFeatures) for the encoder."""
    if isinstance(X_rows, DocFeatures):
        return X_rows if device is None else X_rows.to(device)
    if sp.issparse(X_rows):
        csr = sp.csr_matrix(X_rows)
        features = DocFeatures(
            n_rows=csr.shape[0],
            n_features=csr.shape[1],
            indices=torch.from_numpy(csr.indices.astype(np.int64)),
            offsets=torch.from_numpy(csr.indptr[:-1].astype(np.int64)),
            weights=torch.from_numpy(csr.data.astype(np.float32)),
        )
    elif isinstance(X_rows, torch.Tensor):
        tensor = X_rows.float()
        if tensor.dim() == 1:
            tensor = tensor[None]
        features = DocFeatures(tensor.shape[0], tensor.shape[1], dense=tensor)
    else:
        array = np.asarray(X_rows, dtype=np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2:
            raise ValueError(f"features must be 2-D (documents x features), got shape {array.shape}")
        features = DocFeatures(array.shape[0], array.shape[1], dense=torch.from_numpy(np.ascontiguousarray(array)))
    return features if device is None else features.to(device)


def sparse_linear(features: DocFeatures, weight: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """(x * scale) @ weight for either input form; weight is (F, D), result (B, D)."""
    if features.dense is not None:
        x = features.dense if scale is None else features.dense * scale
        return x @ weight
    assert features.indices is not None and features.offsets is not None and features.weights is not None
    values = features.weights if scale is None else features.weights * scale[features.indices]
    out = F.embedding_bag(
        features.indices, weight, features.offsets, mode="sum", per_sample_weights=values, include_last_offset=False
    )
    if out.shape[0] < features.n_rows:  # trailing empty rows produce no bag
        out = torch.cat([out, out.new_zeros(features.n_rows - out.shape[0], out.shape[1])])
    return out


def input_normalization(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (shift, scale) fitted on training features.

    Dense features (e.g. emotions, whose columns range from 1e-2 to 1e2) are z-scored; sparse ones
    (bag of words, TF-IDF) keep shift 0 and scale 1, because centring would destroy sparsity and
    rescaling rare words by their tiny spread would blow them up.
    """
    n_features = X.shape[1]
    if sp.issparse(X):
        return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    dense = np.asarray(X, dtype=np.float64)
    mean = dense.mean(axis=0)
    std = dense.std(axis=0)
    scale = np.where(std > 1e-8, 1.0 / np.maximum(std, 1e-8), 1.0)
    return mean.astype(np.float32), scale.astype(np.float32)

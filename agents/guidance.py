"""Cluster guidance of the chain, XLGen's BCL (bit-vector cluster guidance, EACL 2023).

Why: a tail label has few training documents, but its *cluster* (k-means on PIFA label embeddings,
`envs.label_clusters`) has many; telling the decoder which clusters a document is about narrows the
label choice where the evidence for the label itself is thin.

What is fed, and how:
  * a linear head on the document encoding (before conditioning) predicts the document's multi-hot
    cluster vector, trained with binary cross-entropy, weight λ (optionally λ / epoch, annealed);
  * the decoder is conditioned on a cluster vector c ∈ {0,1}^C: `W c` (a bias-free projection) is
    added to the document encoding that the GRU reads at every step and the output layer sees;
  * training uses the GOLD clusters of the document (the clusters of its gold labels); inference
    uses the PREDICTED ones: sigmoid > 0.5, and at least one (the most probable) cluster;
  * optionally (`mix`, not in XLGen) a share of training documents is conditioned on its predicted
    clusters instead: on bibtex a decoder that only ever saw gold vectors over-trusts them (test
    P@1 67.0 with gold clusters, 56.0 with its predicted ones at 0.58 cluster micro F1).

Gold clusters travel as C extra feature columns after the text features (`with_gold_clusters`): the
learners, the vector env and the decoders pass feature rows unchanged, so every learner (fixed
orders, rearrangement, REINFORCE/PPO/combined) and the ensemble train and decode a guided policy
without knowing it. A policy given only the text columns (validation, test) predicts its clusters.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from labelchain.envs.data.dataset import Split
from labelchain.envs.label_overlap import document_clusters

GUIDANCE_KINDS = ("none", "bcl", "mcg")  # mcg: cluster tokens before the labels (agents.mcg)


class ClusterGuidance(nn.Module):
    """The BCL head (document encoding -> cluster logits) and the conditioning projection."""

    def __init__(
        self, doc_size: int, n_clusters: int, weight: float = 1.0, anneal: bool = False, mix: float = 0.0
    ) -> None:
        super().__init__()
        if n_clusters < 1 or not weight >= 0 or not 0.0 <= mix <= 1.0:
            raise ValueError(
                f"guidance needs n_clusters >= 1, weight >= 0, 0 <= mix <= 1; got {n_clusters}, {weight}, {mix}"
            )
        self.n_clusters, self.weight, self.anneal, self.mix = int(n_clusters), float(weight), bool(anneal), float(mix)
        self.head = nn.Linear(doc_size, n_clusters)
        self.project = nn.Linear(n_clusters, doc_size, bias=False)

    def cluster_logits(self, doc: torch.Tensor) -> torch.Tensor:
        return self.head(doc)

    def predict(self, doc: torch.Tensor) -> torch.Tensor:
        """(B, C) float multi-hot: clusters with sigmoid > 0.5, or the most probable one if none is."""
        logits = self.cluster_logits(doc)
        chosen = logits > 0.0  # sigmoid(x) > 0.5
        best = F.one_hot(logits.argmax(dim=1), self.n_clusters).bool()
        empty = ~chosen.any(dim=1, keepdim=True)
        return (chosen | (best & empty)).float()

    def training_clusters(self, doc: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """The cluster vector a training document is conditioned on: gold, or with probability `mix`
        (in train mode, drawn from torch's global generator like dropout) the predicted one, so the
        decoder also learns from the noisy vectors it will see at inference."""
        if not (self.training and self.mix > 0):
            return gold
        use_predicted = torch.rand(gold.shape[0], 1, device=gold.device) < self.mix
        return torch.where(use_predicted, self.predict(doc.detach()), gold)

    def condition(self, doc: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
        """Document encoding conditioned on a (B, C) cluster vector: doc + W c."""
        return doc + self.project(clusters.to(doc.dtype))

    def loss_weight(self, epoch: int) -> float:
        """λ, or λ / epoch (1-based) when annealed."""
        return self.weight / max(int(epoch), 1) if self.anneal else self.weight

    def loss(self, doc: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the cluster head against the gold (B, C) cluster vector."""
        return F.binary_cross_entropy_with_logits(self.cluster_logits(doc), gold.to(doc.dtype))


def with_gold_clusters(split: Split, clusters: np.ndarray | sp.spmatrix, n_clusters: int) -> Split:
    """`split` with the documents' gold cluster multi-hot appended as C feature columns (training).

    `clusters`: label -> cluster array, or an (L, C) membership matrix of overlapping clusters
    (`envs.label_overlap.membership_matrix`), where a label puts all its clusters in the gold vector.
    """
    gold = document_clusters(split.Y, clusters, n_clusters).astype(np.float32)
    if sp.issparse(split.X):
        X = sp.hstack([sp.csr_matrix(split.X, dtype=np.float32), gold], format="csr")
    else:
        X = np.hstack([np.asarray(split.X, dtype=np.float32), gold.toarray()])
    return Split(X, split.Y)


def split_guidance_columns(X, n_features: int, n_clusters: int):
    """(text features, gold clusters (B, C) tensor or None) of feature rows that may carry gold clusters.

    Rows with exactly `n_features` columns carry none; rows with `n_features + n_clusters` carry them
    last. Anything else is an error naming both widths.
    """
    width = int(X.shape[1])
    if width == n_features:
        return X, None
    if width != n_features + n_clusters:
        raise ValueError(
            f"features have {width} columns; a guided policy expects {n_features} (text) or "
            f"{n_features + n_clusters} (text + {n_clusters} gold cluster columns)"
        )
    if sp.issparse(X):
        csr = sp.csr_matrix(X)
        return csr[:, :n_features], torch.from_numpy(csr[:, n_features:].toarray().astype(np.float32))
    if isinstance(X, torch.Tensor):
        return X[:, :n_features], X[:, n_features:].float()
    arr = np.asarray(X, dtype=np.float32)
    return arr[:, :n_features], torch.from_numpy(np.ascontiguousarray(arr[:, n_features:]))

"""The classic chain as a peer: an ensemble of classifier chains (Read et al., ECC).

Researchers from the MULAN/MEKA world compare any chain with classifier chains, so this is one of
the reference peers (agents.peers registry name "ecc"): scikit-learn's `ClassifierChain` over L2
logistic regression (liblinear, as `agents.peers.OvRLogistic`), one chain per random label order
(orders drawn from the peer's seed), each chain's per-label probabilities averaged. At prediction
a chain feeds its own 0/1 predictions of the earlier labels forward (scikit-learn's
chain_method="predict", the classic rule). C is tuned on validation and the set rule chosen like
the other peers' (agents.peers.tune_peer).

Cost: a chain fits L logistic regressions on features widened by up to L - 1 label columns, so
ECC costs about `n_chains` times one-vs-rest. For large label sets the chain count follows
`chain_count`: 10 chains while n_chains * L stays within CHAIN_LABEL_BUDGET label fits, fewer
(at least 1) beyond, so delicious (983 labels) gets 2 chains and bibtex (159) gets 10.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import ClassifierChain

from labelchain.envs.data.dataset import Features, Split
from labelchain.agents.feature_scaler import FeatureScaler

DEFAULT_CHAINS = 10
CHAIN_LABEL_BUDGET = 2000  # label models per ECC fit (chains x labels) before chains are dropped


def chain_count(n_labels: int, n_chains: int = DEFAULT_CHAINS, budget: int = CHAIN_LABEL_BUDGET) -> int:
    """`n_chains`, capped so chains x labels stays within `budget` (never below one chain)."""
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    return max(1, min(n_chains, budget // max(1, n_labels)))


class LogisticOrConstant(ClassifierMixin, BaseEstimator):
    """Logistic regression (liblinear), or a constant when y has one class: a label absent from, or
    present in every document of, the training part (liblinear refuses those)."""

    def __init__(self, C: float = 1.0, max_iter: int = 200, random_state: int = 0) -> None:
        self.C, self.max_iter, self.random_state = C, max_iter, random_state

    def fit(self, X: Any, y: np.ndarray) -> LogisticOrConstant:
        y = np.asarray(y).astype(np.int8)
        self.classes_ = np.array([0, 1])
        self.constant_ = None if 0 < y.sum() < y.size else float(y.sum() > 0)
        if self.constant_ is None:
            self.model_ = LogisticRegression(
                C=self.C, solver="liblinear", max_iter=self.max_iter, random_state=self.random_state
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning on a few rare labels is expected
                self.model_.fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.constant_ is not None:
            p = np.full(X.shape[0], self.constant_)
            return np.stack([1.0 - p, p], axis=1)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


class EnsembleOfChains:
    """`chain_count(L, n_chains)` classifier chains over random orders; scores = mean probability."""

    def __init__(
        self,
        C: float = 1.0,
        n_chains: int = DEFAULT_CHAINS,
        max_iter: int = 200,
        seed: int = 0,
        chain_budget: int = CHAIN_LABEL_BUDGET,
    ) -> None:
        self.C, self.n_chains, self.max_iter, self.seed = C, n_chains, max_iter, seed
        self.chain_budget = chain_budget

    def fit(self, train: Split) -> EnsembleOfChains:
        self.scaler = FeatureScaler().fit(train.X)
        X = self.scaler.transform(train.X)
        Y = train.Y.toarray().astype(np.int8)
        self.n_labels = Y.shape[1]
        self.used_chains = chain_count(self.n_labels, self.n_chains, self.chain_budget)
        rng = np.random.default_rng(self.seed)
        base = LogisticOrConstant(C=self.C, max_iter=self.max_iter, random_state=self.seed)
        self.chains = []
        for _ in range(self.used_chains):
            order = rng.permutation(self.n_labels)
            self.chains.append(ClassifierChain(base, order=order).fit(X, Y))
        return self

    def scores(self, X: Features) -> np.ndarray:
        X = self.scaler.transform(X)
        total = np.zeros((X.shape[0], self.n_labels), dtype=np.float64)
        for chain in self.chains:
            total += chain.predict_proba(X)
        return (total / len(self.chains)).astype(np.float32)

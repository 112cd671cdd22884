"""The peers' input scaling, shared by the sklearn peers (agents.peers) and the classifier chains
(agents.classifier_chains): a module of its own so that neither imports the other for it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.dataset import Features


class FeatureScaler:
    """Dense: z-score with train statistics (a constant column stays 0); sparse: float64 CSR as is."""

    def fit(self, X: Features) -> FeatureScaler:
        self.sparse = sp.issparse(X)
        if not self.sparse:
            dense = np.asarray(X, dtype=np.float64)
            self.mean, self.std = dense.mean(axis=0), dense.std(axis=0)
            self.std[self.std == 0] = 1.0
        return self

    def transform(self, X: Features) -> Features:
        if self.sparse:
            return sp.csr_matrix(X, dtype=np.float64)
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std

"""Non-sequential scorers: the reference peers (one-vs-rest logistic regression, Omikuji, an
ensemble of classifier chains in agents.classifier_chains) and the label-frequency floor, tuned on the same validation split as the chains.

A scorer is fitted on training documents and gives a float32 score per label (higher = better);
label sets come from one `agents.set_rules.SetRule` tuned on validation for every scorer (and for
the ensemble and the auxiliary head), so no rule assumes every document has a gold label.
`tune_peer` runs a small hyper-parameter search on validation (ranking metric), keeps the best
fitted model, then tunes its set rule; the chosen values and each candidate's score are kept for
the report. Peers train on the chains' training part only (train minus the validation slice), so
peers and chains see the same documents.

Features: dense inputs are standardised with training statistics; sparse inputs (bag of words,
TF-IDF) are used as they are. Omikuji needs its training data in a file: it is written to a private
temporary folder and removed (no user file is read). Omikuji exposes no seed (its 2-means
initialisation uses Rust's OS-seeded thread_rng), so its results vary a little between runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from labelchain.agents.set_rules import SetRule, tune_set_rule
from labelchain.agents.feature_scaler import FeatureScaler
from labelchain.envs.data.dataset import Features, Split
from labelchain.envs.data.textformats import write_xc
from labelchain.envs.metrics import RANKING_NAMES, evaluate, is_better

INSTALL_HINT = "pip install -e '.[peers]'"
OVR_C_GRID = (0.1, 1.0, 10.0)
OMIKUJI_GRID = tuple({"n_trees": n, "cluster_k": k} for n in (3, 5) for k in (2, 8))


class PeerUnavailable(RuntimeError):
    """A peer's optional dependency is missing; callers skip that peer with a note."""


class Scorer(Protocol):
    def fit(self, train: Split) -> Scorer: ...
    def scores(self, X: Features) -> np.ndarray: ...


# ----------------------------------------------------------------------------- scorers
class LabelFrequency:
    """The floor: every document gets the training label frequencies as scores."""

    def fit(self, train: Split) -> LabelFrequency:
        self.freq = (train.label_freq / max(1, len(train))).astype(np.float32)
        return self

    def scores(self, X: Features) -> np.ndarray:
        return np.broadcast_to(self.freq, (X.shape[0], self.freq.size)).copy()


class OvRLogistic:
    """One binary L2 logistic regression per label (liblinear: deterministic, fastest single-thread
    solver measured here); a label whose training column is constant scores that constant."""

    def __init__(self, C: float = 1.0, max_iter: int = 200, seed: int = 0) -> None:
        self.C, self.max_iter, self.seed = C, max_iter, seed

    def fit(self, train: Split) -> OvRLogistic:
        from sklearn.linear_model import LogisticRegression

        self.scaler = FeatureScaler().fit(train.X)
        X = self.scaler.transform(train.X)
        Y = train.Y.tocsc()
        n = len(train)
        self.models: list[Any] = []
        for label in range(Y.shape[1]):
            positives = Y.indices[Y.indptr[label] : Y.indptr[label + 1]]
            if positives.size in (0, n):
                self.models.append(float(positives.size > 0))
                continue
            y = np.zeros(n, dtype=np.int8)
            y[positives] = 1
            model = LogisticRegression(C=self.C, solver="liblinear", max_iter=self.max_iter, random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning on a few rare labels is expected
                model.fit(X, y)
            self.models.append(model)
        return self

    def scores(self, X: Features) -> np.ndarray:
        X = self.scaler.transform(X)
        out = np.empty((X.shape[0], len(self.models)), dtype=np.float32)
        for label, model in enumerate(self.models):
            out[:, label] = model if isinstance(model, float) else model.predict_proba(X)[:, 1]
        return out


def import_omikuji():
    try:
        import omikuji
    except ImportError as error:
        raise PeerUnavailable(
            f"Omikuji is not installed ({error}); install the optional extra: {INSTALL_HINT}"
        ) from None
    return omikuji


@contextlib.contextmanager
def native_output_to(log_path: Path):
    """Send fds 1 and 2 to `log_path` while Omikuji's Rust code prints thousands of progress lines."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log_path, "wb") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


class OmikujiTree:
    """Omikuji (Parabel/Bonsai-style label trees); scores of the top-`top_k` labels, 0 for the rest."""

    def __init__(
        self, n_trees: int = 3, cluster_k: int = 2, top_k: int = 10, beam_size: int = 10, n_threads: int = 1
    ) -> None:
        if top_k < 5:
            raise ValueError(f"top_k must be >= 5 so P@5 and nDCG@5 see 5 labels, got {top_k}")
        self.omikuji = import_omikuji()
        self.n_trees, self.cluster_k, self.top_k, self.beam_size, self.n_threads = (
            n_trees,
            cluster_k,
            top_k,
            beam_size,
            n_threads,
        )

    def fit(self, train: Split) -> OmikujiTree:
        self.scaler = FeatureScaler().fit(train.X)
        self.n_labels = train.Y.shape[1]
        hyper = self.omikuji.Model.default_hyper_param()
        hyper.n_trees, hyper.cluster_k = self.n_trees, self.cluster_k
        with tempfile.TemporaryDirectory(prefix="labelchain-omikuji-") as folder:
            data_path, log_path = Path(folder) / "train.txt", Path(folder) / "omikuji.log"
            write_xc(data_path, sp.csr_matrix(self.scaler.transform(train.X)), train.Y)
            try:
                with native_output_to(log_path):
                    self.model = self.omikuji.Model.train_on_data(str(data_path), hyper, n_threads=self.n_threads)
            except RuntimeError as error:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Omikuji training failed: {error}\n{tail}") from None
        self.model.init_prediction_thread_pool(self.n_threads)
        return self

    def scores(self, X: Features) -> np.ndarray:
        X = sp.csr_matrix(self.scaler.transform(X), dtype=np.float32)
        X.sort_indices()
        out = np.zeros((X.shape[0], self.n_labels), dtype=np.float32)
        k = min(self.top_k, self.n_labels)
        for row in range(X.shape[0]):
            start, end = X.indptr[row], X.indptr[row + 1]
            pairs = list(zip(X.indices[start:end].tolist(), X.data[start:end].tolist()))
            for label, score in self.model.predict(pairs, beam_size=self.beam_size, top_k=k):
                out[row, label] = score
        return out


def _make(name: str, hyper: dict, seed: int) -> Scorer:
    if name == "ovr_logistic":
        return OvRLogistic(seed=seed, **hyper)
    if name == "ecc":
        from labelchain.agents.classifier_chains import EnsembleOfChains

        return EnsembleOfChains(seed=seed, **hyper)
    if name == "omikuji":
        return OmikujiTree(**hyper)
    return LabelFrequency()


PEERS = ("ovr_logistic", "omikuji", "label_frequency", "ecc")
DEFAULT_GRIDS: dict[str, tuple[dict, ...]] = {
    "ovr_logistic": tuple({"C": c} for c in OVR_C_GRID),
    "ecc": tuple({"C": c} for c in OVR_C_GRID),
    "omikuji": OMIKUJI_GRID,
    "label_frequency": ({},),
}


# ----------------------------------------------------------------------------- tuning on validation
@dataclass
class TunedPeer:
    """A fitted scorer with its validation-chosen hyper-parameters and set rule."""

    name: str
    scorer: Scorer
    hyper: dict
    set_rule: SetRule
    val_scores: np.ndarray
    search: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def predict(self, X: Features) -> tuple[sp.csr_matrix, np.ndarray]:
        """(label sets, scores) in the form chain policies give, for envs.metrics.evaluate."""
        scores = self.scorer.scores(X)
        return self.set_rule.apply(scores), scores

    def val_output(self) -> tuple[sp.csr_matrix, np.ndarray]:
        return self.set_rule.apply(self.val_scores), self.val_scores


def tune_peer(
    name: str,
    train: Split,
    val: Split,
    *,
    seed: int = 0,
    grid: tuple[dict, ...] | None = None,
    ranking_metric: str = "nDCG@5",
    set_metric: str = "example_f1",
) -> TunedPeer:
    """Fit every grid point on `train`, keep the best by `ranking_metric` on `val` (ties: earlier),
    then tune the set rule on `val`. Raises PeerUnavailable if an optional dependency is missing."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")
    if ranking_metric not in RANKING_NAMES:
        raise ValueError(f"ranking_metric must be one of {RANKING_NAMES}, got {ranking_metric!r}")
    grid = DEFAULT_GRIDS[name] if grid is None else grid
    if not grid:
        raise ValueError(f"{name}: empty hyper-parameter grid")
    best: tuple[float, Scorer, dict, np.ndarray] | None = None
    search, started, fit_seconds = [], time.perf_counter(), 0.0
    for hyper in grid:
        tick = time.perf_counter()
        scorer = _make(name, dict(hyper), seed).fit(train)
        fit_time = time.perf_counter() - tick
        val_scores = scorer.scores(val.X)
        value = evaluate(val.Y, scores=val_scores)[ranking_metric]
        search.append({**hyper, ranking_metric: value, "fit_time_s": fit_time})
        if is_better(ranking_metric, value, None if best is None else best[0]):
            best, fit_seconds = (value, scorer, dict(hyper), val_scores), fit_time
    assert best is not None
    rule, _ = tune_set_rule(best[3], val.Y, metric=set_metric)
    timings = {"tune_time_s": time.perf_counter() - started, "fit_time_s": fit_seconds}
    return TunedPeer(name, best[1], best[2], rule, best[3], search, timings)

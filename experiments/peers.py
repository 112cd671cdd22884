"""Non-sequential reference baselines for the comparison tables: one-vs-rest logistic regression
(scikit-learn) and Omikuji (a Parabel-style label tree, the optional `peers` extra).

    python experiments/peers.py --dataset bibtex --peers ovr_logistic omikuji

Every peer trains on `ds.train` and returns test-split outputs in the form the chain policies give,
`(Y_pred: bool CSR (n_test, L), scores: float32 (n_test, L))`, so `envs.metrics.evaluate` scores
peers and chains the same way.

Choices (fixed a priori, none tuned on test data):
* Features: dense inputs (emotions, scene, yeast) are standardised with statistics of the train
  split; sparse inputs (binary bag-of-words, TF-IDF) are used as they are.
* Label sets: a label is predicted when its score >= `threshold` (0.5: a probability for LR, and
  for Omikuji the product of the node probabilities on the label's path). With `at_least_one`
  (default on) every document also gets its top-1 label: every test document of the benchmark
  sets has at least one gold label, and an empty prediction scores example F1 = 0.
* Ties in top-1 go to the lower label id, as in `envs.metrics`.
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
from typing import Callable

import numpy as np
import scipy.sparse as sp

from sklearn.linear_model import LogisticRegression

from experiments.common import atomic_write_json, parse_args, single_thread
from envs.data.dataset import Dataset, Features
from envs.data.loading import load_dataset
from envs.metrics import HEADLINE, evaluate
from envs.data.textformats import write_xc

PeerOutput = tuple[sp.csr_matrix, np.ndarray]
INSTALL_HINT = "pip install -e '.[peers]'"


class PeerUnavailable(RuntimeError):
    """A peer's optional dependency is missing; callers skip that peer with a note."""


# ----------------------------------------------------------------------------- shared pieces
def prepare_features(ds: Dataset) -> tuple[Features, Features]:
    """(train X, test X): dense standardised with train statistics (a constant column stays 0);
    sparse passed through as float64 CSR (what liblinear works in, converted once, not per label)."""
    if sp.issparse(ds.train.X):
        return sp.csr_matrix(ds.train.X, dtype=np.float64), sp.csr_matrix(ds.test.X, dtype=np.float64)
    train = np.asarray(ds.train.X, dtype=np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return (train - mean) / std, (np.asarray(ds.test.X, dtype=np.float64) - mean) / std


def threshold_labels(scores: np.ndarray, threshold: float, at_least_one: bool) -> sp.csr_matrix:
    """Bool CSR of scores >= threshold, plus each row's top-1 label (lowest id on ties) if asked."""
    chosen = scores >= threshold
    if at_least_one and scores.shape[1] > 0:
        chosen[np.arange(scores.shape[0]), np.argmax(scores, axis=1)] = True
    return sp.csr_matrix(chosen)


def frequency_baseline(ds: Dataset) -> PeerOutput:
    """The floor every learner must beat: for every test doc, the m most frequent training labels
    (m = mean labels per training doc rounded half up, at least 1; ties to the lower label id);
    scores = training label frequencies (fraction of training docs)."""
    freq = ds.label_freq.astype(np.float32) / max(1, len(ds.train))
    m = max(1, int(np.floor(ds.train.Y.sum() / max(1, len(ds.train)) + 0.5)))
    top = np.argsort(-freq, kind="stable")[: min(m, ds.n_labels)]
    row = np.zeros(ds.n_labels, dtype=bool)
    row[top] = True
    n_test = len(ds.test)
    scores = np.broadcast_to(freq, (n_test, ds.n_labels)).copy()
    return sp.csr_matrix(np.broadcast_to(row, (n_test, ds.n_labels))), scores


# ----------------------------------------------------------------------------- one-vs-rest LR
def ovr_logistic(
    ds: Dataset,
    seed: int = 0,
    *,
    C: float = 1.0,
    solver: str = "liblinear",
    max_iter: int = 200,
    threshold: float = 0.5,
    at_least_one: bool = True,
    timings: dict[str, float] | None = None,
) -> PeerOutput:
    """One binary L2 logistic regression per label, scores = P(label | doc).

    liblinear (primal trust-region Newton, deterministic) was the fastest single-thread solver
    measured here (about 0.1-0.25 s per label on bibtex/reuters/delicious; lbfgs is similar, saga
    7-20x slower). A label whose training column is constant (no positive, or all positive) gets
    that constant as its score instead of a fit that would raise.
    """
    X_train, X_test = prepare_features(ds)
    Y = ds.train.Y.tocsc()
    n_train = len(ds.train)
    scores = np.empty((len(ds.test), ds.n_labels), dtype=np.float32)
    started = time.perf_counter()
    predict_seconds = 0.0
    for label in range(ds.n_labels):
        positives = Y.indices[Y.indptr[label] : Y.indptr[label + 1]]
        if positives.size in (0, n_train):
            scores[:, label] = 1.0 if positives.size else 0.0
            continue
        y = np.zeros(n_train, dtype=np.int8)
        y[positives] = 1
        model = LogisticRegression(C=C, solver=solver, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning on a few rare labels is expected
            model.fit(X_train, y)
        tick = time.perf_counter()
        scores[:, label] = model.predict_proba(X_test)[:, 1]
        predict_seconds += time.perf_counter() - tick
    if timings is not None:
        timings["fit_time_s"] = time.perf_counter() - started - predict_seconds
        timings["predict_time_s"] = predict_seconds
    return threshold_labels(scores, threshold, at_least_one), scores


# ----------------------------------------------------------------------------- Omikuji
def _import_omikuji():
    try:
        import omikuji
    except ImportError as error:
        raise PeerUnavailable(
            f"Omikuji is not installed ({error}); install the optional extra: {INSTALL_HINT}"
        ) from None
    return omikuji


@contextlib.contextmanager
def _native_output_to(log_path: Path):
    """Send file descriptors 1 and 2 to `log_path` while native code runs: Omikuji's Rust logger
    prints INFO lines to stdout and per-example progress bars to stderr, thousands of lines."""
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


def omikuji_tree(
    ds: Dataset,
    seed: int = 0,
    *,
    n_trees: int = 3,
    top_k: int = 10,
    beam_size: int = 10,
    threshold: float = 0.5,
    at_least_one: bool = True,
    n_threads: int = 1,
    timings: dict[str, float] | None = None,
) -> PeerOutput:
    """Omikuji with its default (Parabel-like) hyper-parameters except `n_trees`; scores of the
    top-`top_k` labels per doc, 0 for the rest.

    Scores are Omikuji's, in [0, 1] (averaged over trees), so `threshold` 0.5 means "more likely
    than not" as for LR. Not seedable: Omikuji draws its 2-means initial centroids and its solver's
    randomness from Rust's OS-seeded thread_rng and exposes no seed, so `seed` is accepted for a
    uniform interface but cannot fix the result; repeated runs differ a little even on small label
    sets (medical P@1 0.840-0.845 over 4 runs, emotions 0.718-0.733 over 3).
    """
    omikuji = _import_omikuji()
    if top_k < 5:
        raise ValueError(f"top_k must be >= 5 so P@5 and nDCG@5 see 5 labels, got {top_k}")
    X_train, X_test = prepare_features(ds)
    hyper = omikuji.Model.default_hyper_param()
    hyper.n_trees = n_trees
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="labelchain-omikuji-") as folder:
        data_path = Path(folder) / "train.txt"
        log_path = Path(folder) / "omikuji.log"
        write_xc(data_path, sp.csr_matrix(X_train), ds.train.Y)
        try:
            with _native_output_to(log_path):
                model = omikuji.Model.train_on_data(str(data_path), hyper, n_threads=n_threads)
        except RuntimeError as error:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Omikuji training failed on {ds.name}: {error}\n{tail}") from None
    fit_seconds = time.perf_counter() - started
    model.init_prediction_thread_pool(n_threads)
    started = time.perf_counter()
    X_test = sp.csr_matrix(X_test, dtype=np.float32)
    X_test.sort_indices()
    scores = np.zeros((X_test.shape[0], ds.n_labels), dtype=np.float32)
    k = min(top_k, ds.n_labels)
    for row in range(X_test.shape[0]):
        start, end = X_test.indptr[row], X_test.indptr[row + 1]
        pairs = list(zip(X_test.indices[start:end].tolist(), X_test.data[start:end].tolist()))
        for label, score in model.predict(pairs, beam_size=beam_size, top_k=k):
            scores[row, label] = score
    if timings is not None:
        timings["fit_time_s"] = fit_seconds
        timings["predict_time_s"] = time.perf_counter() - started
    return threshold_labels(scores, threshold, at_least_one), scores


# ----------------------------------------------------------------------------- running peers
PEERS: dict[str, Callable[..., PeerOutput]] = {"ovr_logistic": ovr_logistic, "omikuji": omikuji_tree}


def run_peer(name: str, ds: Dataset, seed: int = 0, **options) -> dict[str, float]:
    """evaluate() of one peer on the test split, plus wall_time_s (fit + predict), fit_time_s and
    predict_time_s. Raises PeerUnavailable when its optional dependency is missing."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {sorted(PEERS)}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    Y_pred, scores = PEERS[name](ds, seed, timings=timings, **options)
    wall = time.perf_counter() - started
    result = evaluate(ds.test.Y, scores=scores, Y_pred=Y_pred, label_freq=ds.label_freq)
    result.update(wall_time_s=wall, **timings)
    return result


@dataclass
class Args:
    """Score the non-sequential reference baselines on one dataset's test split (one thread)."""

    dataset: str = "bibtex"
    peers: list[str] = field(default_factory=lambda: list(PEERS))
    seed: int = 0
    out: str | None = field(default=None, metadata={"help": "also write the table as JSON here"})


TABLE_COLUMNS = HEADLINE + ("example_f1", "micro_f1", "fit_time_s", "wall_time_s")


def main(args: Args) -> dict[str, dict[str, float]]:
    single_thread()
    ds = load_dataset(args.dataset)
    print(f"{args.dataset}: {len(ds.train)} train / {len(ds.test)} test, {ds.n_labels} labels")
    results: dict[str, dict[str, float]] = {}
    Y_pred, scores = frequency_baseline(ds)
    results["most_frequent"] = evaluate(ds.test.Y, scores=scores, Y_pred=Y_pred)
    for name in args.peers:
        try:
            results[name] = run_peer(name, ds, args.seed)
        except PeerUnavailable as note:
            print(f"skipping {name}: {note}")
    print(f"{'peer':<14}" + "".join(f"{c:>12}" for c in TABLE_COLUMNS))
    for name, metrics in results.items():
        cells = "".join(
            f"{metrics[c]:>12.4f}" if c in metrics else f"{'-':>12}" for c in TABLE_COLUMNS
        )
        print(f"{name:<14}{cells}")
    if args.out:
        atomic_write_json(args.out, {"dataset": args.dataset, "seed": args.seed, "results": results})
    return results


if __name__ == "__main__":
    main(parse_args(Args))

"""Out-of-fold peer scores as a chain's prior (agents.prior) and their cache (experiments.prior_cache):
exact folds, a memorising peer that never sees its own document, top-M sparsity, mismatches refused
in one line, cache round trip, key binding and rebuilt entries."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.data.fingerprint import content_hash
from labelchain.agents.prior import (
    FLOOR,
    PriorMismatch,
    PriorScores,
    build_prior,
    check_shortlist,
    fold_assignment,
    log_scores,
    out_of_fold,
    prior_identity,
    recall_at,
    split_identity,
    to_dense,
    top_m,
)
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments import prior_cache


class OneNearestNeighbour:
    """The memorising peer: a document's scores are an exact copy of its nearest training document's
    labels (squared distance; ties to the lower row). Records which documents it was fitted on."""

    fitted_on: list[set[float]] = []

    def fit(self, train: Split) -> OneNearestNeighbour:
        self.X, self.Y = np.asarray(train.X), train.Y.toarray().astype(np.float32)
        OneNearestNeighbour.fitted_on.append(set(self.X[:, 0].tolist()))
        return self

    def scores(self, X) -> np.ndarray:
        X = np.asarray(X)
        distances = ((X[:, None, :] - self.X[None, :, :]) ** 2).sum(axis=2)
        return self.Y[np.argmin(distances, axis=1)]


def pairs_split() -> Split:
    """Two tight pairs of documents far apart; each document has its own label, so a peer that saw a
    document copies its label (perfect), one that did not copies its pair's (always wrong)."""
    X = np.array([[0.0], [1.0], [10.0], [11.0]], dtype=np.float32)
    return Split(X, sp.identity(4, format="csr", dtype=bool))


def dense_convert(scorer, X) -> sp.csr_matrix:
    return sp.csr_matrix(scorer.scores(X))


# ----------------------------------------------------------------------------- folds
def test_fold_assignment_is_seeded_and_exact() -> None:
    assert fold_assignment(10, 5, 0).tolist() == [3, 4, 1, 2, 0, 2, 0, 1, 4, 3]
    assert fold_assignment(10, 5, 1).tolist() == [1, 2, 2, 4, 0, 3, 4, 1, 0, 3]
    assert fold_assignment(7, 3, 0).tolist() == [2, 2, 0, 0, 0, 1, 1]  # sizes 3, 2, 2
    assert np.array_equal(fold_assignment(1000, 5, 7), fold_assignment(1000, 5, 7))
    assert np.bincount(fold_assignment(1003, 5, 3)).tolist() == [201, 201, 201, 200, 200]
    for bad in (1, 8):
        with pytest.raises(ValueError, match="folds must be in"):
            fold_assignment(7, bad, 0)


# ----------------------------------------------------------------------------- the memorising peer
def test_memorising_peer_never_sees_its_own_document() -> None:
    train = pairs_split()
    in_sample = OneNearestNeighbour().fit(train).scores(train.X)
    assert np.array_equal(in_sample, np.eye(4))  # seeing the document: a perfect copy of its labels
    assert evaluate(train.Y, scores=in_sample)["P@1"] == 1.0

    OneNearestNeighbour.fitted_on = []
    loo = out_of_fold(OneNearestNeighbour, train, np.arange(4), dense_convert).toarray()
    assert loo.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]  # the pair's labels
    assert evaluate(train.Y, scores=loo)["P@1"] == 0.0
    assert OneNearestNeighbour.fitted_on == [{1.0, 10.0, 11.0}, {0.0, 10.0, 11.0}, {0.0, 1.0, 11.0}, {0.0, 1.0, 10.0}]

    # seeded two folds [0, 1, 0, 1]: fold 0 = docs 0 and 2, scored by a peer fitted on docs 1 and 3
    OneNearestNeighbour.fitted_on = []
    assignment = fold_assignment(4, 2, 0)
    assert assignment.tolist() == [0, 1, 0, 1]
    two = out_of_fold(OneNearestNeighbour, train, assignment, dense_convert).toarray()
    assert two.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    assert OneNearestNeighbour.fitted_on == [{1.0, 11.0}, {0.0, 10.0}]
    with pytest.raises(ValueError, match="fold assignment has 3 entries for 4 documents"):
        out_of_fold(OneNearestNeighbour, train, np.arange(3), dense_convert)


# ----------------------------------------------------------------------------- units and sparsity
def test_log_scores_exact_and_clipped() -> None:
    odds = log_scores(np.array([[0.5, 0.75, 1.0, 0.0]]), "log_odds")
    assert np.allclose(odds, [[0.0, math.log(3.0), -FLOOR, FLOOR]])
    omikuji = log_scores(np.array([[1.0, 0.25, 0.0, 1e-9]]), "log_score")
    assert omikuji[0, 0] == 0.0 and math.isclose(omikuji[0, 1], math.log(0.25))
    assert omikuji[0, 2] == -np.inf and omikuji[0, 3] == FLOOR  # not returned / returned at the floor
    with pytest.raises(ValueError, match="score kind"):
        log_scores(np.zeros((1, 1)), "probability")


def test_top_m_keeps_the_best_sparse_with_ties_to_lower_id_and_explicit_zeros() -> None:
    scores = np.array([[0.0, 2.0, -1.0, 2.0], [-np.inf, -np.inf, 0.5, -np.inf]])
    kept = top_m(scores, 2)
    assert kept.indptr.tolist() == [0, 2, 3]  # row 1: only one finite score
    assert kept.indices.tolist() == [1, 3, 2] and kept.data.tolist() == [2.0, 2.0, 0.5]
    three = top_m(scores, 3)
    assert three.indices[:3].tolist() == [0, 1, 3] and three.data[0] == 0.0  # a kept 0.0 stays stored
    assert three.nnz == 4
    dense = to_dense(three)
    assert dense[0].tolist() == [0.0, 2.0, np.float32(FLOOR), 2.0]
    assert dense.dtype == np.float32 and dense[1, 2] == 0.5 and dense[1, 0] == np.float32(FLOOR)
    assert top_m(scores, 10).shape == (2, 4)  # M above L keeps at most L


def test_recall_at_counts_gold_inside_each_shortlist() -> None:
    scores = sp.csr_matrix(np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 5.0, 4.0]], dtype=np.float32))
    gold = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool))
    assert recall_at(scores, gold, 1) == pytest.approx(1 / 3)  # doc 0: label 0; doc 1: label 2 (not gold)
    assert recall_at(scores, gold, 2) == pytest.approx(2 / 3)
    assert recall_at(scores, gold, 3) == 1.0
    with pytest.raises(PriorMismatch, match="shape"):
        recall_at(scores, gold[:, :3], 1)


# ----------------------------------------------------------------------------- bad input
def tiny_dataset(seed: int = 0, n: int = 40, L: int = 5) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    Y = sp.csr_matrix(rng.random((n, L)) < 0.4)
    return Dataset("tiny", Split(X[:30], Y[:30]), Split(X[30:], Y[30:]), [f"l{i}" for i in range(L)])


def fake_prior(ds: Dataset, seed: int = 0, val_fraction: float = 0.1) -> PriorScores:
    from labelchain.agents.supervised import carve_validation

    train, val = carve_validation(ds.train, val_fraction, seed)
    part = lambda n: top_m(np.arange(n * ds.n_labels, dtype=float).reshape(n, -1), 2)  # noqa: E731
    return PriorScores(
        part(len(train)),
        part(len(val)),
        part(len(ds.test)),
        "ovr_logistic",
        {"hyper": {"C": 1.0}, "top_m": 2, "folds": 5, "floor": FLOOR},
        content_hash(ds),
        split_identity(train, val, ds.test, seed=seed, val_fraction=val_fraction),
        ds.n_labels,
    )


def test_prior_from_other_data_split_or_labels_is_refused_in_one_line() -> None:
    ds = tiny_dataset()
    prior = fake_prior(ds)
    prior.check(dataset_hash=content_hash(ds), split=prior.split, n_labels=5)
    other = tiny_dataset(seed=1)
    with pytest.raises(PriorMismatch, match=r"^prior \(ovr_logistic\) was built on dataset \w+, not on this one"):
        prior.check(dataset_hash=content_hash(other), split=prior.split, n_labels=5)
    with pytest.raises(PriorMismatch, match="has 5 labels, the data has 6"):
        prior.check(dataset_hash=prior.dataset_hash, split=prior.split, n_labels=6)
    with pytest.raises(PriorMismatch, match=r"^prior \(ovr_logistic\) was built on another split: seed 0, here 1$"):
        prior.check(dataset_hash=prior.dataset_hash, split=fake_prior(ds, seed=1).split, n_labels=5)
    for m in (0, -1, 6, 2.5, True):
        with pytest.raises(PriorMismatch, match=r"shortlist size M=.* must be a whole number in \[1, 5\]"):
            check_shortlist(m, 5)
    assert check_shortlist(5, 5) == 5 and check_shortlist(1, 5) == 1


# ----------------------------------------------------------------------------- cache
def test_cache_round_trip_key_binding_and_rebuilt_entries(tmp_path: Path, monkeypatch, caplog) -> None:
    ds = tiny_dataset()
    built: list[int] = []

    def build(peer, dataset, *, seed, val_fraction, folds, top_m_size, grid):
        built.append(seed)
        return fake_prior(dataset, seed, val_fraction)

    monkeypatch.setattr(prior_cache, "build_prior", build)
    first = prior_cache.cached_prior("ovr_logistic", ds, top_m=2, cache_dir=tmp_path)
    again = prior_cache.cached_prior("ovr_logistic", ds, top_m=2, cache_dir=tmp_path)
    assert built == [0]
    for part in ("train", "val", "test"):
        a, b = first.part(part), again.part(part)
        assert (a.indptr.tolist(), a.indices.tolist(), a.data.tolist()) == (
            b.indptr.tolist(),
            b.indices.tolist(),
            b.data.tolist(),
        )
    assert (again.peer, again.dataset_hash, again.split, again.n_labels) == (
        first.peer,
        first.dataset_hash,
        first.split,
        5,
    )
    assert again.settings["hyper"] == {"C": 1.0}
    # another seed, M, fold count or dataset is another entry (bound to its key)
    prior_cache.cached_prior("ovr_logistic", ds, seed=1, top_m=2, cache_dir=tmp_path)
    prior_cache.cached_prior("ovr_logistic", ds, folds=3, top_m=2, cache_dir=tmp_path)
    prior_cache.cached_prior("ovr_logistic", tiny_dataset(seed=2), top_m=2, cache_dir=tmp_path)
    assert built == [0, 1, 0, 0]
    entries = sorted((tmp_path / "priors").iterdir())
    assert len(entries) == 4
    key = lambda **kw: prior_cache.prior_key(  # noqa: E731
        first.dataset_hash,
        "ovr_logistic",
        **{"seed": 0, "val_fraction": 0.1, "folds": 5, "top_m": 2, "grid": None, **kw},
    )
    home = tmp_path / "priors" / f"tiny-ovr_logistic-{prior_cache.key_digest(key())}"
    assert prior_cache.load_prior(home, key())[1] is None
    assert prior_cache.load_prior(home, key(top_m=3)) == (None, "entry belongs to other settings (top_m differ)")

    # a foreign entry (another key's files) in this key's folder: rebuilt with one warning
    foreign = tmp_path / "priors" / f"tiny-ovr_logistic-{prior_cache.key_digest(key(seed=1))}"
    shutil.rmtree(home)
    shutil.copytree(foreign, home)
    with caplog.at_level(logging.WARNING, logger="labelchain.experiments.prior_cache"):
        prior_cache.cached_prior("ovr_logistic", ds, top_m=2, cache_dir=tmp_path)
    assert built == [0, 1, 0, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [
        f"prior cache entry {home} is not usable (entry belongs to other settings (seed differ)); rebuilding it"
    ]
    # a damaged matrix: rebuilt with one warning, then sound again
    caplog.clear()
    (home / "val.npz").write_bytes(b"cut")
    with caplog.at_level(logging.WARNING, logger="labelchain.experiments.prior_cache"):
        prior_cache.cached_prior("ovr_logistic", ds, top_m=2, cache_dir=tmp_path)
        prior_cache.cached_prior("ovr_logistic", ds, top_m=2, cache_dir=tmp_path)
    assert built == [0, 1, 0, 0, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [
        f"prior cache entry {home} is not usable (val.npz does not match its checksum); rebuilding it"
    ]


# ----------------------------------------------------------------------------- on real data
@pytest.mark.needs_data
def test_build_prior_on_emotions_is_out_of_fold_top_m_and_checked() -> None:
    ds = load_dataset("emotions")
    prior = build_prior("ovr_logistic", ds, seed=0, folds=5, top_m_size=3, grid=({"C": 0.1},))
    assert (prior.train.shape, prior.val.shape, prior.test.shape) == ((352, 6), (39, 6), (202, 6))
    for part in ("train", "val", "test"):
        assert np.diff(prior.part(part).indptr).tolist() == [3] * prior.part(part).shape[0]
    assert prior.settings["hyper"] == {"C": 0.1} and prior.settings["score_kind"] == "log_odds"
    # out-of-fold training scores are less sure of the gold labels than in-sample ones would be
    from labelchain.agents.peers import OvRLogistic
    from labelchain.agents.supervised import carve_validation

    train, _ = carve_validation(ds.train, 0.1, 0)
    in_sample = log_scores(OvRLogistic(C=0.1).fit(train).scores(train.X), "log_odds")
    oof = prior.dense("train")
    gold = train.Y.toarray()
    assert oof[gold].mean() < in_sample[gold].mean() - 0.1
    # the test part equals the full-train peer's top-3 log-odds
    full = top_m(log_scores(OvRLogistic(C=0.1).fit(train).scores(ds.test.X), "log_odds"), 3)
    assert np.allclose(prior.test.toarray(), full.toarray(), atol=1e-5)
    prior.check(**prior_identity(ds, train, carve_validation(ds.train, 0.1, 0)[1], seed=0, val_fraction=0.1))
    other_val = carve_validation(ds.train, 0.2, 0)
    with pytest.raises(PriorMismatch, match="another split: val_fraction 0.1, here 0.2"):
        prior.check(**prior_identity(ds, *other_val, seed=0, val_fraction=0.2))
    with pytest.raises(PriorMismatch, match="shortlist size M=7"):
        build_prior("ovr_logistic", ds, top_m_size=7)


@pytest.mark.needs_data
def test_omikuji_prior_is_log_scores_of_at_most_m_labels_and_missing_omikuji_is_named(monkeypatch) -> None:
    pytest.importorskip("omikuji")
    ds = load_dataset("medical")
    prior = build_prior("omikuji", ds, folds=3, top_m_size=20, grid=({"n_trees": 1, "cluster_k": 2},))
    assert prior.settings["score_kind"] == "log_score" and prior.train.shape == (300, 45)
    for part in ("train", "val", "test"):
        scores = prior.part(part)
        assert np.diff(scores.indptr).max() <= 20 and FLOOR <= scores.data.min() and scores.data.max() <= 0.0
    from labelchain.agents.supervised import carve_validation

    unseen = np.flatnonzero(carve_validation(ds.train, 0.1, 0)[0].label_freq == 0)
    assert unseen.size > 0 and not np.isin(prior.test.indices, unseen).any()  # never a label absent from training
    import sys

    from labelchain.agents.peers import PeerUnavailable

    monkeypatch.setitem(sys.modules, "omikuji", None)
    with pytest.raises(PeerUnavailable, match=r"Omikuji is not installed .*pip install -e '\.\[peers\]'"):
        build_prior("omikuji", ds, top_m_size=20)


# ----------------------------------------------------------------------------- bounded memory at large L
class RowsAreScores:
    """A hand-made peer whose scores of a document are its feature row (so a chunk's scores are known)."""

    def scores(self, X) -> np.ndarray:
        return np.asarray(X, dtype=np.float32)


def test_chunked_scoring_equals_unchunked_with_uneven_chunks() -> None:
    from labelchain.agents.prior import score_chunk_rows, score_top_m

    raw = np.array(
        [
            [0.5, 0.0, 0.25, 0.5],  # a tie (labels 0 and 3) and an unreturned label (0.0)
            [0.0, 0.0, 0.0, 0.125],
            [1.0, 0.5, 0.25, 0.125],
            [0.0, 0.0, 0.0, 0.0],  # nothing returned: an empty row
            [0.125, 0.25, 0.5, 1.0],
            [0.25, 0.25, 0.25, 0.25],
            [1e-9, 0.0, 0.0, 0.5],  # below the floor's score: clipped to FLOOR, still stored
        ]
    )
    whole = score_top_m(RowsAreScores(), raw, "log_score", 2, n_labels=4, chunk_rows=7)
    for rows in (3, 2, 1):  # 7 documents as 3 + 3 + 1, 2 + 2 + 2 + 1 and one at a time
        chunked = score_top_m(RowsAreScores(), raw, "log_score", 2, n_labels=4, chunk_rows=rows)
        assert chunked.indptr.tolist() == whole.indptr.tolist()
        assert chunked.indices.tolist() == whole.indices.tolist()
        assert chunked.data.tolist() == whole.data.tolist()
    assert whole.indptr.tolist() == [0, 2, 3, 5, 5, 7, 9, 11]
    assert whole.indices.tolist() == [0, 3, 3, 0, 1, 2, 3, 0, 1, 0, 3]
    log = lambda p: float(np.float32(math.log(p)))  # noqa: E731
    half, eighth, quarter, floor = log(0.5), log(0.125), log(0.25), float(np.float32(FLOOR))
    rows_data = [[half, half], [eighth], [0.0, half], [], [half, 0.0], [quarter, quarter], [floor, half]]
    assert whole.data.tolist() == [value for row in rows_data for value in row]
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        score_top_m(RowsAreScores(), raw, "log_score", 2, n_labels=4, chunk_rows=0)
    # the default chunk holds one 64 MiB float64 (chunk x L) block, at least one document
    assert score_chunk_rows(100_000) == 83 and score_chunk_rows(1000) == 8388 and score_chunk_rows(10**9) == 1


@pytest.mark.needs_data
def test_a_one_point_grid_is_fitted_without_tuning_and_gives_the_tuned_prior(monkeypatch) -> None:
    from labelchain.agents import prior as prior_module

    ds = load_dataset("emotions")
    point = {"C": 1.0}
    tuned = build_prior("ovr_logistic", ds, folds=2, top_m_size=3, grid=(point, dict(point)))  # ties: the first
    monkeypatch.setattr(prior_module, "tune_peer", lambda *a, **k: pytest.fail("a one-point grid was tuned"))
    fitted = build_prior("ovr_logistic", ds, folds=2, top_m_size=3, grid=(point,))
    for part in ("train", "val", "test"):
        assert (fitted.part(part) != tuned.part(part)).nnz == 0
    assert fitted.settings["hyper"] == tuned.settings["hyper"] == point

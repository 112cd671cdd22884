"""Saved predictions (envs.predictions): the metrics rebuilt from a file equal the reported ones."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.metrics import evaluate
from labelchain.envs.predictions import (
    PredictionsError,
    check_same_documents,
    load_cell,
    from_outputs,
    load_predictions,
    metrics_from_predictions,
    save_predictions,
)


def _random_case(seed: int, n: int = 40, n_labels: int = 9, levels: int = 3):
    """Scores on a coarse grid (many ties), gold and predicted sets, training counts."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(n, n_labels)).astype(np.float64) / levels
    gold = sp.csr_matrix(rng.random((n, n_labels)) < 0.3)
    Y_pred = sp.csr_matrix(rng.random((n, n_labels)) < 0.3)
    label_freq = rng.integers(0, 30, size=n_labels)
    return scores, gold, Y_pred, label_freq


def _pred(scores, gold, Y_pred, label_freq, n_train=50, top_k=20, **kw):
    return from_outputs(
        "m",
        gold,
        scores,
        Y_pred,
        dataset="d",
        dataset_hash="h",
        label_freq=label_freq,
        n_train=n_train,
        top_k=top_k,
        **kw,
    )


def test_ties_are_stored_lower_id_first():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    pred = _pred(scores, sp.csr_matrix(scores > 0.4), None, None, n_train=None)
    assert pred.top_ids.tolist() == [[1, 3, 0, 2, 5, 4]]  # k = min(20, L)
    assert pred.top_scores.dtype == np.float32 and pred.top_scores[0, 0] == np.float32(0.9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_labels", [3, 9, 40])
def test_every_metric_rebuilt_exactly_after_a_round_trip(tmp_path: Path, seed: int, n_labels: int):
    scores, gold, Y_pred, label_freq = _random_case(seed, n_labels=n_labels)
    want = evaluate(gold, scores=scores, Y_pred=Y_pred, label_freq=label_freq, n_train=50)
    path = save_predictions(tmp_path / "m.npz", _pred(scores, gold, Y_pred, label_freq))
    loaded = load_predictions(path, dataset_hash="h", split="test", n_docs=40)
    assert metrics_from_predictions(loaded) == want
    assert len(want) == 16  # ranking, PSP, set metrics and rare_f1: all of them
    assert (loaded.pred_sets != Y_pred.astype(bool)).nnz == 0 and (loaded.gold != gold.astype(bool)).nnz == 0
    assert loaded.top_ids.dtype == np.int32 and loaded.top_ids.shape == (40, min(20, n_labels))


def test_rows_without_psp_or_sets_rebuild_the_same_keys(tmp_path: Path):
    scores, gold, Y_pred, label_freq = _random_case(7)
    floor = save_predictions(tmp_path / "f.npz", _pred(scores, gold, Y_pred, label_freq, n_train=None))
    assert metrics_from_predictions(load_predictions(floor)) == evaluate(
        gold, scores=scores, Y_pred=Y_pred, label_freq=label_freq
    )
    ranking = save_predictions(tmp_path / "r.npz", _pred(scores, gold, None, None, n_train=None))
    assert metrics_from_predictions(load_predictions(ranking)) == evaluate(gold, scores=scores)


def test_mismatches_are_named_in_one_line(tmp_path: Path):
    scores, gold, Y_pred, label_freq = _random_case(1)
    path = save_predictions(tmp_path / "a.npz", _pred(scores, gold, Y_pred, label_freq))
    for kwargs, words in [
        ({"dataset_hash": "other"}, "dataset_hash is 'h', expected 'other'"),
        ({"split": "val"}, "split is 'test', expected 'val'"),
        ({"n_docs": 39}, "n_docs is 40, expected 39"),
    ]:
        with pytest.raises(PredictionsError, match=words) as info:
            load_predictions(path, **kwargs)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    a = load_predictions(path)
    with pytest.raises(PredictionsError, match="b: dataset_hash 'h2' does not match a's 'h'"):
        check_same_documents([a, replace(a, dataset_hash="h2")], ["a", "b"])
    with pytest.raises(PredictionsError, match="n_docs 39 does not match"):
        fewer = _pred(scores[:39], gold[:39], Y_pred[:39], label_freq)
        check_same_documents([a, fewer], ["a", "b"])
    with pytest.raises(PredictionsError, match="gold label sets differ"):
        other_gold = sp.csr_matrix(np.logical_not(gold.toarray()))
        check_same_documents([a, _pred(scores, other_gold, Y_pred, label_freq)], ["a", "b"])
    check_same_documents([a, load_predictions(path)])  # the same documents: fine
    save_predictions(tmp_path / "b.npz", _pred(scores[:39], gold[:39], Y_pred[:39], label_freq))
    with pytest.raises(PredictionsError, match="b.npz: n_docs 39 does not match .*a.npz's 40"):
        load_cell(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PredictionsError, match="bad.npz: not a predictions file"):
        load_predictions(tmp_path / "bad.npz")
    with pytest.raises(PredictionsError, match="no such predictions file"):
        load_predictions(tmp_path / "missing.npz")


@pytest.mark.needs_data
@pytest.mark.slow
def test_a_real_run_saves_predictions_that_rebuild_metrics_json(tmp_path: Path):
    from labelchain.experiments.train_rl import main
    from labelchain.experiments.run.train_rl_args import Args

    run = main(
        Args(
            dataset="emotions",
            learners=["freq2rare", "rearrange", "combined"],
            updates=4,
            batch_size=32,
            hidden_size=16,
            eval_every=2,
            checkpoint_every=2,
            progress=False,
            seed=1,
            runs_dir=str(tmp_path),
        )
    )
    report = json.loads((run / "metrics.json").read_text())
    rows = {name: result["test"] for name, result in report["learners"].items()}
    rows.update(best_fixed=report["best_fixed"]["test"], ensemble=report["ensemble"]["test"])
    rows["floor"] = report["floor"]["test"]
    files = sorted(p.stem for p in (run / "predictions").glob("*.npz"))
    assert files == sorted(rows)
    preds = [load_predictions(run / "predictions" / f"{name}.npz", split="test", n_docs=202) for name in rows]
    check_same_documents(preds, list(rows))
    assert sorted(load_cell(run / "predictions", split="test")) == sorted(rows)
    for name, pred in zip(rows, preds):
        assert metrics_from_predictions(pred) == rows[name], name
        assert pred.method == name and pred.dataset == "emotions" and pred.seed == 1 and pred.k == 6
    assert len(rows["combined"]) == 16 and "PSP@1" not in rows["floor"]
    assert preds[0].dataset_hash == "33edc1d084cfb842"  # envs.data.fingerprint.content_hash(emotions)
    assert load_predictions(run / "predictions" / "best_fixed.npz").extra == {"chosen": "freq2rare"}


@pytest.mark.parametrize("k", [1, 7, 10, 20])
def test_deep_ranks_from_stored_ids_equal_the_full_score_metrics(tmp_path: Path, k: int):
    """P@k and nDCG@k for any k <= K from the saved ids (ties on a coarse score grid) = envs.metrics'."""
    from labelchain.envs.metrics import ndcg_at_k, precision_at_k

    scores, gold, Y_pred, label_freq = _random_case(3, n=60, n_labels=40, levels=4)
    pred = load_predictions(save_predictions(tmp_path / "m.npz", _pred(scores, gold, Y_pred, label_freq)))
    gold_dense = gold.toarray()
    hits = np.take_along_axis(gold_dense, pred.top_ids[:, :k], axis=1)
    assert hits.sum(axis=1).mean() / k == pytest.approx(precision_at_k(gold, scores, k), abs=1e-15)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.array([discount[: min(n, k)].sum() for n in gold_dense.sum(axis=1)])
    dcg = hits @ discount
    ndcg = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0).mean()
    assert ndcg == pytest.approx(ndcg_at_k(gold, scores, k), abs=1e-12)


def _tampered(tmp_path: Path, change) -> Path:
    """A saved predictions file with one array replaced by `change(arrays)`'s edit (a crafted file)."""
    scores, gold, Y_pred, label_freq = _random_case(2)
    path = save_predictions(tmp_path / "p.npz", _pred(scores, gold, Y_pred, label_freq))
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    out = tmp_path / "crafted.npz"
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda a: a.__setitem__("top_ids", a["top_ids"].astype(np.int64) + 2**32),
            "top_ids holds label ids outside 0..8",
        ),
        (lambda a: a["top_ids"].__setitem__((0, 0), -1), "top_ids holds label ids outside 0..8"),
        (lambda a: a["top_ids"].__setitem__((0, 0), 9), "top_ids holds label ids outside 0..8"),
        (lambda a: a.__setitem__("top_ids", a["top_ids"] + 0.5), "top_ids should hold integer label ids"),
        (lambda a: a.__setitem__("gold_indices", a["gold_indices"].astype(np.int64) - 2**32), "gold_indices holds"),
        (lambda a: a.__setitem__("pred_indices", a["pred_indices"].astype(np.int64) - 1), "pred_indices holds"),
        (lambda a: a.__setitem__("doc_ids", a["doc_ids"][:-1]), r"doc_ids is not \(40,\)"),
        (lambda a: a.__setitem__("label_freq", a["label_freq"][:3]), r"label_freq is not \(9,\)"),
        (lambda a: a.__setitem__("meta", np.array("[1, 2]")), "not a predictions file"),
        (lambda a: a["gold_indptr"].__setitem__(1, a["gold_indptr"][-1] + 1), "gold sets do not fit"),
    ],
)
def test_crafted_arrays_are_refused_not_wrapped_or_truncated(tmp_path: Path, change, words: str):
    """Issue 19 re-probe: ids were cast to int32 before any check, so 2**32+1 became label 1, 1.5 became 1
    and -1 indexed the last label: a tampered file loaded as other, valid-looking predictions."""
    path = _tampered(tmp_path, change)
    with pytest.raises(PredictionsError, match=words) as info:
        load_predictions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)

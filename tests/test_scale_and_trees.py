"""experiments/bench/bench_scale.py (with scale_common.py and scale_prior.py) and compare_trees.py: their
pieces on hand-made cases, and one tiny end-to-end run of each (no timing asserts)."""

from __future__ import annotations

import json
import numpy as np
import pytest
from prediction_checks import assert_rows_rebuild
import scipy.sparse as sp

from labelchain.experiments.bench import bench_scale, scale_common, scale_prior
from labelchain.experiments import compare_trees
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.reports.scale import summary as scale_summary


def test_first_label_precision_exact():
    Y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=bool))
    # doc 0 picks gold 2, doc 1 misses (0), doc 2 has no gold, doc 3 predicts nothing (-1)
    assert scale_common.first_label_precision(Y, np.array([2, 0, 1, -1])) == pytest.approx(0.25)


def test_scale_summary_ratios():
    args = bench_scale.Args(labels=[10, 1000], outputs=["flat", "tree"])
    cell = lambda train, decode: {"train_docs_per_s": train, "decode_docs_per_s": decode}
    results = {
        "10": {"flat": cell(100.0, 400.0), "tree": cell(90.0, 300.0)},
        "1000": {"flat": cell(10.0, 20.0), "tree": cell(45.0, 240.0)},
    }
    summary = scale_summary(results, args.outputs)
    assert summary["flat_train_slowdown_10_to_1000"] == pytest.approx(10.0)
    assert summary["tree_decode_slowdown_10_to_1000"] == pytest.approx(1.25)
    assert summary["tree_over_flat_decode_L1000"] == pytest.approx(12.0)
    assert summary["tree_over_flat_train_L10"] == pytest.approx(0.9)


def test_prior_cell_rankings_and_metrics_exact():
    # the chain's labels in emission order, then by first-step probability (sparse), distinct
    from types import SimpleNamespace

    import torch

    first = torch.sparse_coo_tensor(
        torch.tensor([[0, 0, 0, 1, 1], [2, 4, 1, 0, 3]]),
        torch.tensor([0.1, 0.5, 0.3, 0.2, 0.7]),
        (2, 5),
        check_invariants=True,
    ).coalesce()
    result = SimpleNamespace(labels=torch.tensor([[2, -1], [-1, -1]]), first_probs=first)
    assert scale_prior.chain_ranking(result, 5) == [[2, 4, 1, 2], [3, 0]]
    ranked = scale_common.fill_ranked([[2, 4, 1, 2], [3, 0]], np.array([0, 1, 2, 3, 4]), k=4)
    assert ranked.tolist() == [[2, 4, 1, 0], [3, 0, 1, 2]]  # repeats dropped, filled by frequency order
    Y_train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0]] * 3 + [[1, 1, 0, 0, 0, 0]], dtype=bool))
    Y_test = sp.csr_matrix(np.array([[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=bool))
    top = np.array([[2, 4, 1, 0, 5], [3, 0, 1, 2, 4]])
    metrics = scale_common.ranked_metrics(Y_train, Y_test, top)
    assert metrics["P@1"] == 0.5 and metrics["P@5"] == pytest.approx(3 / 10)
    from labelchain.envs.tail_metrics import propensity

    inv_p = 1.0 / propensity(np.array([4, 1, 0, 0, 0, 0]), 4)
    assert metrics["PSP@5"] == pytest.approx(((inv_p[2] + inv_p[1]) / 5 + inv_p[0] / 5) / 2)
    assert scale_common.frequency_order(Y_train).tolist() == [0, 1, 2, 3, 4, 5]


def test_prior_goal_lines():
    from labelchain.experiments.reports.scale import prior_goals, prior_table

    prior = {
        "P@1": 0.9,
        "P@5": 0.5,
        "PSP@5": 1.0,
        "prior_alone_P@1": 0.88,
        "prior_alone_P@5": 0.5,
        "prior_alone_PSP@5": 1.0,
        "recall_at_M": 0.97,
        "train_docs_per_s": 100.0,
        "decode_docs_per_s": 600.0,
        "pipeline_decode_docs_per_s": 300.0,
        "dense_decode_docs_per_s": 50.0,
        "shortlist": 100,
        "folds": 3,
        "updates": 10,
        "learner": "rearrange",
        "peak_rss_mb": 1.0,
    }
    omikuji = {"omikuji_P@1": 0.92, "omikuji_decode_docs_per_s": 1200.0, "omikuji_train_s": 4.0, "peak_rss_mb": 1.0}
    goals = prior_goals({"100000": {"prior": prior, "omikuji": omikuji}})["100000"]
    assert goals["P@1_minus_omikuji"] == pytest.approx(-0.02) and not goals["P@1_met"]
    assert goals["decode_over_omikuji"] == pytest.approx(0.5) and goals["decode_met"]
    assert goals["pipeline_decode_over_omikuji"] == pytest.approx(0.25) and not goals["pipeline_decode_met"]
    text = "\n".join(prior_table({"100000": {"prior": prior, "omikuji": omikuji}}))
    assert "P@1 -0.020 (missed)" in text and "0.50x Omikuji's for the chain alone (met)" in text
    assert prior_table({"10": {"flat": {}}}) == []


@pytest.mark.slow
def test_prior_cell_runs_end_to_end():
    pytest.importorskip("omikuji")
    args = bench_scale.Args(
        labels=[300],
        train_docs=300,
        test_docs=40,
        n_features=200,
        hidden_size=16,
        batch_size=16,
        decode_docs=20,
        prior_shortlist=10,
        prior_updates=2,
        write=False,
    )
    cell = scale_prior.prior_cell(300, args)
    assert 0.0 <= cell["P@1"] <= 1.0 and 0.0 <= cell["P@5"] <= 1.0 and cell["PSP@5"] >= 0.0
    assert 0.0 < cell["recall_at_M"] <= 1.0 and cell["decode_docs_per_s"] > 0 and cell["dense_decode_docs_per_s"] > 0
    assert cell["pipeline_decode_docs_per_s"] < cell["decode_docs_per_s"]


@pytest.mark.slow
def test_scale_cells_run_end_to_end():
    args = bench_scale.Args(
        labels=[300],
        train_docs=200,
        test_docs=40,
        n_features=200,
        hidden_size=16,
        updates=2,
        batch_size=16,
        decode_docs=20,
        env_envs=8,
        env_seconds=0.05,
        tree_leaf_size=20,
        write=False,
    )
    for kind in ("flat", "tree"):
        cell = bench_scale.chain_cell(kind, 300, args)
        assert 0.0 <= cell["P@1"] <= 1.0 and cell["train_docs_per_s"] > 0 and cell["peak_rss_mb"] > 0
        assert (cell["tree_build_s"] > 0) == (kind == "tree")
    env = bench_scale.env_cell(300, args)
    assert env["env_steps_per_s"] > 0 and env["env_dense_mask_steps_per_s"] > 0
    with pytest.raises(ValueError, match="--outputs"):
        bench_scale.build_policy("cube", None, args)


def test_parse_shape_names_the_flag():
    assert compare_trees.parse_shape("16x64") == (16, 64)
    with pytest.raises(ValueError, match="--shapes"):
        compare_trees.parse_shape("16-64")


@pytest.mark.slow
def test_compare_trees_tiny_grid_writes_and_merges(tmp_path):
    args = compare_trees.Args(
        datasets=["emotions"],
        seeds=[0],
        shapes=["2x2", "4x4"],
        rearrange_epochs=1,
        combined_epochs=1,
        hidden_size=16,
        out_dir=str(tmp_path),
        backend="local",
        jobs=1,  # the execution layer's in-process path: an error in a cell would propagate here
    )
    payload = compare_trees.main(args)
    methods = sorted(r["method"] for r in payload["rows"])
    assert methods == ["combined", "combined+tree", "ensemble", "ensemble+tree", "rearrange", "rearrange+tree"]
    tree_rows = [r for r in payload["rows"] if r["method"].endswith("+tree")]
    assert {r["config"]["shape"] for r in tree_rows} == {payload["shapes"]["emotions"]}
    assert set(tree_rows[0]["config"]["validation_by_shape"]) == {"2x2", "4x4"}
    assert_rows_rebuild(payload["rows"], tmp_path / "predictions" / "trees" / "emotions" / "seed0")
    # A second run adding another seed (rearrangement only) keeps the first one's rows and reuses
    # its tree shape.
    compare_trees.main(compare_trees.Args(**{**args.__dict__, "seeds": [1], "combined_epochs": 0}))
    saved = json.loads((tmp_path / "trees.json").read_text())
    assert sorted({r["seed"] for r in saved["rows"]}) == [0, 1] and len(saved["rows"]) == 8
    assert sorted(r["method"] for r in saved["rows"] if r["seed"] == 1) == ["rearrange", "rearrange+tree"]
    later = next(r for r in saved["rows"] if r["seed"] == 1 and r["method"] == "rearrange+tree")
    assert later["config"]["chosen_on_seed"] == "earlier seed"
    assert "| emotions | rearrange+tree | 2 |" in (tmp_path / "trees.md").read_text()


@pytest.mark.slow
def test_compare_trees_runs_flat_and_tree_apart(tmp_path):
    """A cell whose flat rows are in the file trains only its tree rows on the next run."""
    args = compare_trees.Args(
        datasets=["emotions"],
        seeds=[0],
        outputs=["flat"],
        shapes=["2x2"],
        rearrange_epochs=1,
        combined_epochs=0,
        hidden_size=16,
        out_dir=str(tmp_path),
        jobs=1,
    )
    first = compare_trees.main(args)
    assert [r["method"] for r in first["rows"]] == ["rearrange"]
    assert {"PSP@1", "PSP@3", "PSP@5"} <= set(first["rows"][0]["metrics"])
    both = compare_trees.main(compare_trees.Args(**{**args.__dict__, "outputs": ["flat", "tree"]}))
    assert sorted(r["method"] for r in both["rows"]) == ["rearrange", "rearrange+tree"]
    saved = json.loads((tmp_path / "trees.json").read_text())
    flat_before = first["rows"][0]["wall_time_s"]
    assert next(r for r in saved["rows"] if r["method"] == "rearrange")["wall_time_s"] == flat_before  # not rerun


def test_compare_trees_names_bad_execution_flags(tmp_path):
    args = compare_trees.Args(datasets=["emotions"], seeds=[0], out_dir=str(tmp_path))
    with pytest.raises(ArgsError, match="--jobs must be >= 1"):
        compare_trees.main(compare_trees.Args(**{**args.__dict__, "jobs": 0}))
    with pytest.raises(ArgsError, match="--backend must be one of"):
        compare_trees.main(compare_trees.Args(**{**args.__dict__, "backend": "slurm"}))
    assert not (tmp_path / "trees.json").exists()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"seeds": [-1]}, r"--seeds must be >= 0 and <= 4294967295, got \[-1\]"),
        ({"hidden_size": 0}, "--hidden-size must be >= 1, got 0"),
        ({"lr": float("nan")}, "--lr must be a finite number > 0, got nan"),
        ({"val_fraction": 2.0}, "--val-fraction must be > 0 and < 1, got 2.0"),
        ({"rearrange_epochs": -1}, "--rearrange-epochs must be >= 0, got -1"),
        ({"tree_beam": 0}, "--tree-beam must be >= 1, got 0"),
        ({"shapes": ["bogus"]}, "--shapes: 'bogus' is not BxLEAF"),
        ({"shapes": ["0x4"]}, "--shapes: '0x4' needs B and LEAF >= 1"),
        ({"outputs": ["bogus"]}, "--outputs must be from"),
    ],
)
def test_compare_trees_bad_values_are_one_line_errors(tmp_path, change, words):
    """Issue 19 re-probe: these were raw ValueError tracebacks from deep in training (or parse_shape)."""
    args = compare_trees.Args(**{"datasets": ["emotions"], "seeds": [0], "out_dir": str(tmp_path), **change})
    with pytest.raises(ArgsError, match=words):
        compare_trees.main(args)
    assert not (tmp_path / "trees.json").exists()


def test_prior_memory_bench_rules_give_one_matrix():
    """bench_prior_memory's old and new rules of each step return the same matrix (tiny sizes, in process)."""
    from labelchain.experiments.bench import bench_prior_memory as memory

    args = memory.Args(n_labels=40, n_docs=30, n_features=20, text_nnz=3, top_m=5)
    for step, rules in memory.RULES.items():
        outs = [memory.run_step(args, step, rule, args.n_docs)[0] for rule in rules]
        assert outs[0].shape == (30, 40) and outs[0].nnz > 0
        for other in outs[1:]:
            assert (other != outs[0]).nnz == 0, step
    shortlist = memory.run_step(args, "shortlist", "new", args.n_docs)[0]
    assert shortlist.dtype == bool and (shortlist.sum(axis=1) == 5).all()  # every top-5 prior entry shortlisted

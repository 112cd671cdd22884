"""One flag vocabulary: every script's flags come from a dataclass Args; deprecated spellings still work."""

from __future__ import annotations

import json
from typing import ClassVar

from labelchain.experiments import ecc_report, restate_claims
from labelchain.experiments.run.common import parse_args


def test_report_scripts_take_dataclass_args():
    args = parse_args(restate_claims.Args, ["--reports", "trees", "--bootstrap", "--resamples", "50"])
    assert (args.reports, args.bootstrap, args.resamples, args.threads) == (["trees"], True, 50, None)
    assert parse_args(restate_claims.Args, []).reports == ["orderings", "strength", "guidance", "trees"]
    args = parse_args(ecc_report.Args, ["--peer", "omikuji", "--threads", "1"])
    assert (args.peer, args.chains, args.threads) == ("omikuji", "ensemble", 1)


def test_ecc_report_prints_the_committed_table(capsys):
    table = ecc_report.main(ecc_report.Args())
    assert table == ecc_report.markdown(json.loads(ecc_report.RESULTS.read_text()))
    assert capsys.readouterr().out == table + "\n"
    assert table.startswith("| dataset | n |")


def test_every_grid_takes_the_execution_flags_from_one_mixin(monkeypatch):
    """compare_orderings, ablations, strength, score_modes, compare_trees and compare_guidance: one
    ExecutionFlags mixin declares --backend/--address/--jobs/--threads, checks them and hands them to run_cells."""
    import dataclasses

    from labelchain.experiments import ablations, compare_guidance, compare_orderings, compare_trees, score_modes
    from labelchain.experiments import strength
    from labelchain.experiments.grid import execution

    for module in (ablations, compare_guidance, compare_orderings, compare_trees, score_modes, strength):
        assert issubclass(module.Args, execution.ExecutionFlags), module.__name__
        names = [f.name for f in dataclasses.fields(module.Args)]
        assert names[:5] == ["threads", "backend", "address", "jobs", "runs_dir"], module.__name__
        assert dataclasses.fields(module.Args)[4].metadata["help"] == execution.RUNS_DIR_HELP
    args = score_modes.Args(backend="local", address="auto", jobs=0)
    assert args.execution_problems() == ["--address auto needs --backend ray", "--jobs must be >= 1, got 0"]
    seen = {}
    monkeypatch.setattr(execution, "run_cells", lambda cells, on_result, **kw: seen.update(kw) or ["x"])
    assert score_modes.Args(jobs=3, threads=2).run_grid([], print, metric="P@1") == ["x"]
    expected = {"backend": "local", "address": None, "jobs": 3, "threads": 2, "metric": "P@1"}
    assert seen == expected | {"storage_dir": "runs/score_modes"}  # each grid's own --runs-dir default


def test_deprecated_flags_are_renamed_with_one_line_each(capsys):
    from labelchain.experiments import compare_trees, score_modes, tune
    from labelchain.experiments.bench import bench_output_layer, bench_scale

    args = parse_args(compare_trees.Args, ["--out", "experiments/results/trees", "--seeds", "0"])
    assert (args.out_dir, args.seeds) == ("experiments/results", [0])
    assert parse_args(compare_trees.Args, ["--out", "none"]).out_dir is None
    assert parse_args(score_modes.Args, ["--out=/tmp/x/score_modes.json"]).out_dir == "/tmp/x"
    assert parse_args(tune.Args, ["--metric", "P@1"]).select_metric == "P@1"
    args = parse_args(bench_scale.Args, ["--budget-updates", "3", "--decode-batch", "7", "--updates", "3"])
    assert (args.updates, args.decode_batch_size) == (3, 7)
    args = parse_args(
        bench_output_layer.Args, ["--beam", "2", "--branching", "4", "--leaf-size", "9", "--features", "5"]
    )
    assert (args.tree_beam, args.tree_branching, args.tree_leaf_size, args.n_features) == (2, 4, 9, 5)
    assert capsys.readouterr().err.splitlines() == [
        "--out is now --out-dir",
        "--out is now --out-dir",
        "--out is now --out-dir",
        "--metric is now --select-metric",
        "--budget-updates is now --updates",
        "--decode-batch is now --decode-batch-size",
        "--beam is now --tree-beam",
        "--branching is now --tree-branching",
        "--leaf-size is now --tree-leaf-size",
        "--features is now --n-features",
    ]
    # typed with the old spelling counts as given under the new name (train_rl's --resume / --preset rules)
    from labelchain.experiments.run.common import given_fields

    assert given_fields(parse_args(tune.Args, ["--metric", "P@1"])) == {"select_metric"}


def test_an_old_out_naming_another_file_is_one_line_error(capsys):
    import pytest

    from labelchain.experiments import compare_trees

    with pytest.raises(SystemExit) as stop:
        parse_args(compare_trees.Args, ["--out", "x/t.json"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: argument --out: x/t.json: the results file is now <--out-dir>/trees.json")
    assert len(err) == 2  # the rename note, the error


def test_a_boolean_flag_keeps_its_no_form_under_a_new_name(capsys):
    from dataclasses import dataclass

    @dataclass
    class Old:
        RENAMED: ClassVar[dict] = {"plots": "figures"}
        figures: bool = True

    assert parse_args(Old, ["--no-plots"]).figures is False
    assert parse_args(Old, ["--plots"]).figures is True
    assert capsys.readouterr().err.splitlines() == ["--no-plots is now --no-figures", "--plots is now --figures"]


def test_saved_args_of_the_old_shape_still_load(capsys):
    """Committed grid files store their Args by field name ("out" before the rename): they load as today's Args."""
    import pytest

    from labelchain.experiments import compare_guidance, compare_trees
    from labelchain.experiments.grid.results_file import load_results
    from labelchain.experiments.run.common import args_from_dict, given_fields
    from labelchain.experiments.run.common import REPO_ROOT

    for module, name in ((compare_trees, "trees"), (compare_guidance, "guidance")):
        saved = load_results(REPO_ROOT / "experiments" / "results" / f"{name}.json", name).args
        assert saved["out"] == f"experiments/results/{name}"  # the old shape, as committed
        args = args_from_dict(module.Args, saved, f"{name}.json")
        assert args.out_dir == "experiments/results" and "out_dir" in given_fields(args)
        assert args.datasets == saved["datasets"] and args.runs_dir == saved["runs_dir"]
    assert capsys.readouterr().err.splitlines() == [
        "trees.json: field 'out' is now 'out_dir'",
        "guidance.json: field 'out' is now 'out_dir'",
    ]
    with pytest.raises(ValueError, match="fields 'out' and 'out_dir' are the same field"):
        args_from_dict(compare_trees.Args, {"out": "a/trees", "out_dir": "a"}, "x.json")
    with pytest.raises(ValueError, match=r"x.json: field 'out': a/t: the results file is now <--out-dir>/trees.json"):
        args_from_dict(compare_trees.Args, {"out": "a/t"}, "x.json")


def test_one_file_outputs_are_out_file(capsys):
    from labelchain.experiments import peers
    from labelchain.experiments.bench import bench_ecc, bench_ray, bench_training

    for args_class in (peers.Args, bench_ecc.Args, bench_ray.Args, bench_training.Args):
        assert parse_args(args_class, ["--out", "x.json"]).out_file == "x.json"
    assert capsys.readouterr().err.splitlines() == ["--out is now --out-file"] * 4
    assert parse_args(bench_training.Args, ["--out-file", "none"]).out_file is None


def test_strength_and_score_modes_take_data_dir():
    """--data-dir says where the data lives, not what a cell is: strength's finished cells stay reusable."""
    from labelchain.experiments import score_modes, strength

    assert parse_args(score_modes.Args, ["--data-dir", "d"]).data_dir == "d"
    args = parse_args(strength.Args, ["--data-dir", "d"])
    assert args.data_dir == "d" and strength.cell_config(args) == strength.cell_config(strength.Args())


def test_every_rename_is_in_the_docs_table():
    """docs/scripts.md lists each deprecated spelling of every script (found on disk) in its table."""
    import importlib
    from pathlib import Path

    from labelchain.experiments.run.common import flag_name, renamed_fields

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "scripts.md").read_text()
    table = [line for line in page.splitlines() if line.startswith("| ")]
    scripts = [*root.glob("experiments/*.py"), *root.glob("experiments/bench/*.py")]
    seen = 0
    for path in scripts:
        if path.stem == "__init__" or "class Args" not in path.read_text():
            continue
        package = "bench." if path.parent.name == "bench" else ""
        args_class = importlib.import_module(f"labelchain.experiments.{package}{path.stem}").Args
        for old, (new, _) in renamed_fields(args_class).items():
            rows = [row for row in table if f"`{flag_name(new)}" in row]
            old_cells = (f"`{flag_name(old)}`", f"`{flag_name(old)} ")  # the flag itself, not a longer one
            assert any(cell in row for row in rows for cell in old_cells), (path.stem, old, new)
            seen += 1
    assert seen >= 14


def test_bench_stats_counts_are_n_star(capsys):
    from labelchain.experiments.bench import bench_stats

    args = parse_args(bench_stats.Args, ["--docs", "60", "--labels", "20", "--seeds", "2"])
    assert (args.n_docs, args.n_labels, args.n_seeds) == (60, 20, 2)
    assert capsys.readouterr().err.splitlines() == [
        "--docs is now --n-docs",
        "--labels is now --n-labels",
        "--seeds is now --n-seeds",
    ]


def test_a_run_folder_of_an_older_shape_still_resumes(tmp_path, monkeypatch, capsys):
    """train_rl's --resume reads config.json's "args" by field name: fields added since take their
    defaults, and a renamed field (declared in Args.RENAMED) is read under its new name."""
    from dataclasses import asdict

    from labelchain.experiments.run import train_rl_args
    from labelchain.experiments.run.train_rl_args import Args, saved_args

    today = asdict(Args(dataset="emotions", updates=7, select_metric="P@1"))
    old = {k: v for k, v in today.items() if k not in ("precision", "predictions_k", "threads", "tree_query_size")}
    (tmp_path / "config.json").write_text(json.dumps({"args": old, "derived": {}}))
    resumed = saved_args(tmp_path)
    assert asdict(resumed) == today
    monkeypatch.setattr(train_rl_args.Args, "RENAMED", {"metric": "select_metric"}, raising=False)
    renamed = {("metric" if k == "select_metric" else k): v for k, v in old.items()}
    (tmp_path / "config.json").write_text(json.dumps({"args": renamed, "derived": {}}))
    assert asdict(saved_args(tmp_path)) == today
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'config.json'}: field 'metric' is now 'select_metric'"
    ]


def test_help_lists_the_old_spellings(capsys):
    import pytest

    from labelchain.experiments.bench import bench_scale

    with pytest.raises(SystemExit):
        parse_args(bench_scale.Args, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "old spellings still accepted: --budget-updates (now --updates), --decode-batch (now --decode-batch-size)"
        in text
    )


def test_a_rename_table_must_name_old_names_of_present_fields():
    import pytest
    from dataclasses import dataclass

    from labelchain.experiments.run.common import renamed_fields

    @dataclass
    class Clash:
        RENAMED: ClassVar[dict] = {"figures": "figures", "plots": "missing"}
        figures: bool = True

    with pytest.raises(TypeError, match=r"Clash.RENAMED: \['figures', 'plots'\] must be old names of present fields"):
        renamed_fields(Clash)

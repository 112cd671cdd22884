"""experiments/compare_orderings.py: the grid end to end on emotions (tiny budget), resume, and the
report's numbers and claims on hand-made rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from labelchain.experiments import compare_orderings, peers, train_rl
from labelchain.experiments.run.common import REPO_ROOT, command_line, parse_args, results_dir
from labelchain.experiments.compare_orderings import SCRIPT, Args, main, resolve_args, train_args
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.reports.orderings import TABLE_METRICS, Summary, compare, mean_std, render_markdown

LEARNERS = ["freq2rare", "rare2freq", "rearrange", "combined"]


def quick_args(tmp: Path, **changes) -> Args:
    return replace(
        Args(
            quick=True,
            learners=LEARNERS,
            peers=["ovr_logistic", "omikuji"],
            updates=10,
            runs_dir=str(tmp / "runs"),
            out_dir=str(tmp / "results"),
            progress=False,
        ),
        **changes,
    )


def omikuji_missing(name, ds, seed, val_fraction, **kwargs):
    if name == "omikuji":
        raise peers.PeerUnavailable("Omikuji is not installed (test)")
    return peers.run_peer(name, ds, seed, val_fraction, **kwargs)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """A run folder stopped half way, then the quick grid (which must resume it), then a rerun."""
    tmp = tmp_path_factory.mktemp("compare")
    args = quick_args(tmp)
    resolved = resolve_args(args)
    half_run = train_rl.main(replace(train_args(resolved, "emotions", 0), stop_after_updates=5))
    assert not (half_run / "metrics.json").exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_orderings, "run_peer", omikuji_missing)
        path = main(args)
        first = json.loads(path.read_text())
        rerun_cells: list[tuple[str, int]] = []
        compute = compare_orderings.compute_cell
        patch.setattr(
            compare_orderings,
            "compute_cell",
            lambda a, dataset, seed, command: rerun_cells.append((dataset, seed)) or compute(a, dataset, seed, command),
        )
        main(args)
    return {
        "args": args,
        "tmp": tmp,
        "path": path,
        "first": first,
        "half_run": half_run,
        "rerun_cells": rerun_cells,
        "second": json.loads(path.read_text()),
    }


@pytest.mark.needs_data
@pytest.mark.slow
def test_grid_writes_a_row_per_method_with_metrics_config_and_wall_time(grid_run):
    results = grid_run["first"]
    rows = results["rows"]
    assert sorted(r["method"] for r in rows) == sorted([*LEARNERS, "best_fixed", "ensemble", "ovr_logistic"])
    kinds = {r["method"]: r["kind"] for r in rows}
    assert kinds == {
        "freq2rare": "fixed",
        "rare2freq": "fixed",
        "rearrange": "dynamic",
        "combined": "dynamic",
        "best_fixed": "best_fixed",
        "ensemble": "ensemble",
        "ovr_logistic": "peer",
    }
    for row in rows:
        assert row["dataset"] == "emotions" and row["seed"] == 0
        assert all(0.0 <= row["metrics"][m] <= 1.0 for m in TABLE_METRICS)
        assert row["wall_time_s"] > 0 and row["config"]
    by_method = {r["method"]: r for r in rows}
    assert by_method["combined"]["config"]["warm_start"].endswith("rearrange/policy")
    assert by_method["rearrange"]["config"]["batch_size"] == 64 and by_method["rearrange"]["config"]["updates"] == 10
    chosen = by_method["best_fixed"]["chosen"]
    assert chosen in ("freq2rare", "rare2freq")
    assert by_method["best_fixed"]["metrics"] == by_method[chosen]["metrics"]
    assert by_method["ensemble"]["config"]["members"] == ["rearrange", "combined"]
    assert results["skipped_peers"] == [
        {"dataset": "emotions", "seed": 0, "peer": "omikuji", "reason": "Omikuji is not installed (test)"}
    ]
    expected_command = command_line(grid_run["args"], SCRIPT)
    assert results["command"] == expected_command and "--quick" in expected_command
    assert results["cells"]["emotions:0"]["data"]["n_test"] == 202


@pytest.mark.needs_data
@pytest.mark.slow
def test_half_finished_run_folder_is_resumed_not_restarted(grid_run):
    run_dirs = list((grid_run["tmp"] / "runs").glob("emotions__compare__0__*"))
    assert run_dirs == [grid_run["half_run"]]
    assert all(r["run_dir"] == str(grid_run["half_run"]) for r in grid_run["first"]["rows"] if r["kind"] != "peer")
    report = json.loads((grid_run["half_run"] / "metrics.json").read_text())
    assert all(result["updates"] == 10 for result in report["learners"].values())


@pytest.mark.needs_data
@pytest.mark.slow
def test_rerun_skips_finished_cells(grid_run):
    assert grid_run["rerun_cells"] == []  # nothing trained or scored again
    assert len(grid_run["second"]["rows"]) == len(grid_run["first"]["rows"])
    assert grid_run["second"]["rows"] == grid_run["first"]["rows"]


@pytest.mark.needs_data
@pytest.mark.slow
def test_markdown_has_mean_std_table_claims_and_command(grid_run):
    text = (grid_run["path"].parent / "orderings.md").read_text()
    assert f"Made by: `{command_line(grid_run['args'], SCRIPT)}`" in text
    assert "## emotions" in text and "## Claims" in text and "### rearrange ≥ best fixed" in text
    assert "### combined > best fixed" in text and "### ensemble > best fixed" in text
    for method in [*LEARNERS, "best_fixed", "ensemble", "ovr_logistic"]:
        assert f"| {method} |" in text
    rows = {r["method"]: r for r in grid_run["first"]["rows"]}
    assert f"{100 * rows['rearrange']['metrics']['P@1']:.2f}" in text
    assert "omikuji (emotions): Omikuji is not installed (test)" in text
    assert grid_run["first"]["cells"]["emotions:0"]["command"] == grid_run["first"]["command"]
    assert "earlier invocations" not in text


@pytest.mark.needs_data
@pytest.mark.slow
def test_changed_configuration_recomputes_only_that_cell(grid_run, tmp_path):
    """A different budget must not be mistaken for a finished cell (and must not duplicate rows)."""
    args = quick_args(
        grid_run["tmp"],
        learners=["freq2rare", "rearrange"],
        peers=["none"],
        updates=4,
        runs_dir=str(tmp_path / "runs"),
        out_dir=str(tmp_path / "other"),
    )
    results = json.loads(main(args).read_text())
    assert sorted(r["method"] for r in results["rows"]) == ["best_fixed", "freq2rare", "rearrange"]
    assert results["rows"][0]["config"]["updates"] == 4


@pytest.mark.needs_data
@pytest.mark.slow
def test_parallel_cells_match_in_process_cells(tmp_path):
    """--jobs 2 runs cells in spawned processes; same seed => same numbers as in this process."""
    tiny = dict(
        quick=False,
        datasets=["emotions"],
        learners=["freq2rare", "rearrange"],
        peers=["none"],
        updates=3,
        eval_every=3,
        hidden_size=8,
        progress=False,
    )
    parallel = json.loads(
        main(Args(seeds=[0, 1], jobs=2, runs_dir=str(tmp_path / "a"), out_dir=str(tmp_path / "a"), **tiny)).read_text()
    )
    assert sorted(parallel["cells"]) == ["emotions:0", "emotions:1"]
    serial = json.loads(
        main(Args(seeds=[1], runs_dir=str(tmp_path / "b"), out_dir=str(tmp_path / "b"), **tiny)).read_text()
    )
    metrics = lambda results, seed: {r["method"]: r["metrics"] for r in results["rows"] if r["seed"] == seed}  # noqa: E731
    assert metrics(parallel, 1) == metrics(serial, 1) and metrics(parallel, 0) != metrics(parallel, 1)


def test_mean_std_and_claims_on_hand_made_rows():
    def summary(kind: str, values: list[float]) -> Summary:
        return Summary(kind, [0, 1], {m: list(values) for m in TABLE_METRICS}, [1.0, 1.0])

    best = summary("best_fixed", [0.40, 0.40])
    assert mean_std(summary("dynamic", [0.4, 0.6]), "P@1") == "50.00 ± 14.14"
    assert mean_std(Summary("fixed", [0], {"P@1": [0.25]}, [1.0]), "P@1") == "25.00"
    claim = compare(summary("dynamic", [0.38, 0.50]), best, "P@1", strict=True)
    assert claim.holds and claim.seeds_holding == 1 and claim.relative == pytest.approx(10.0)
    assert claim.cell() == "yes +10.0% (1/2)"
    tie = compare(summary("dynamic", [0.40, 0.40]), best, "P@1", strict=True)
    assert not tie.holds and tie.cell() == "**no** +0.0% (0/2)"
    assert compare(summary("dynamic", [0.40, 0.40]), best, "P@1", strict=False).cell() == "yes +0.0% (2/2)"


def test_claims_section_reports_failures_plainly():
    def row(method: str, kind: str, seed: int, value: float) -> dict:
        return {
            "dataset": "toy",
            "seed": seed,
            "method": method,
            "kind": kind,
            "metrics": {m: value for m in TABLE_METRICS},
            "wall_time_s": 1.0,
            "chosen": "freq2rare",
        }

    rows = [row("freq2rare", "fixed", s, 0.5) for s in (0, 1)] + [
        row("best_fixed", "best_fixed", s, 0.5) for s in (0, 1)
    ]
    rows += [row("rearrange", "dynamic", 0, 0.55), row("rearrange", "dynamic", 1, 0.55)]
    rows += [row("combined", "dynamic", 0, 0.49), row("combined", "dynamic", 1, 0.49)]
    text = render_markdown({"rows": rows, "cells": {}, "command": "python x"})
    assert "| toy | yes +10.0% (2/2) |" in text
    assert "| toy | **no** -2.0% (0/2) |" in text
    assert "Holds in 5 of 5 dataset × metric cells; on all five metrics for 1 of 1 datasets (toy)" in text
    assert "Does not hold: toy P@1 (49.00 vs 50.00, -2.0%)" in text
    assert "0 of 5 margins are 2% or more" not in text and "5 of 5 margins are 2% or more" in text
    assert "Best fixed ordering (validation): seed 0: freq2rare, seed 1: freq2rare." in text


def test_peers_section_names_the_better_peer_and_the_floor_gap():
    def row(method: str, kind: str, p1: float, rest: float) -> dict:
        metrics = {m: rest for m in TABLE_METRICS} | {"P@1": p1}
        return {"dataset": "toy", "seed": 0, "method": method, "kind": kind, "metrics": metrics, "wall_time_s": 1.0}

    rows = [
        row("ensemble", "ensemble", 0.60, 0.40),
        row("rearrange", "dynamic", 0.62, 0.30),
        row("ovr_logistic", "peer", 0.55, 0.45),
        row("omikuji", "peer", 0.65, 0.35),
        row("label_frequency", "peer", 0.20, 0.10),
    ]
    text = render_markdown({"rows": rows, "cells": {}, "command": "python x"})
    line = next(t for t in text.splitlines() if t.startswith("| toy | -5.00 (omikuji)"))
    assert line.count("-5.00 (ovr_logistic)") == len(TABLE_METRICS) - 1  # OvR is the better peer there
    assert line.endswith("| +42.00 |")  # rearrange's 62 P@1 over the floor's 20


@pytest.mark.needs_data  # the dataset names are resolved (and found) before the other flags are checked
def test_bad_arguments_are_reported_plainly(tmp_path):
    with pytest.raises(ArgsError, match="--peers must be distinct names"):
        resolve_args(quick_args(tmp_path, peers=["nope"]))
    with pytest.raises(ArgsError, match="--learners must be distinct names"):
        resolve_args(quick_args(tmp_path, learners=["freq2rare", "bogus"]))
    with pytest.raises(ArgsError, match="--jobs must be >= 1"):
        resolve_args(quick_args(tmp_path, jobs=0))
    bad = tmp_path / "results" / "orderings.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("[1, 2]")
    with pytest.raises(ArgsError, match="not an orderings results file"):
        main(quick_args(tmp_path))


def test_results_dir_of_the_grid_scripts():
    """--out-dir wins; else --quick writes under RUNS_DIR/quick, never into the committed tables."""
    assert results_dir("out", "runs", quick=True) == Path("out")
    assert results_dir(None, "runs/x", quick=True) == Path("runs/x/quick")
    assert results_dir(None, "runs/x", quick=False) == REPO_ROOT / "experiments" / "results"


@pytest.mark.needs_data
def test_quick_never_writes_into_the_committed_results(tmp_path):
    resolved = resolve_args(Args(quick=True, runs_dir=str(tmp_path)))
    assert resolved.out_dir == str(tmp_path / "quick") and resolved.datasets == ["emotions"]
    assert resolved.seeds == [0]
    assert compare_orderings.grid(Args(seeds=[0, 1], datasets=["a", "b"])) == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("b", 1),
    ]


@pytest.mark.needs_data
@pytest.mark.slow
def test_peers_only_rescores_peers_and_keeps_chain_rows(grid_run, tmp_path):
    """--peers-only on a copy of the grid's file: chains untouched, the peer rows are the new --peers."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "orderings.json").write_text(grid_run["path"].read_text())
    before = json.loads((out / "orderings.json").read_text())
    args = replace(grid_run["args"], out_dir=str(out), peers=["label_frequency"], peers_only=True)
    main(args)
    after = json.loads((out / "orderings.json").read_text())
    chains = lambda rows: [r for r in rows if r["kind"] != "peer"]  # noqa: E731
    assert sorted(chains(after["rows"]), key=str) == sorted(chains(before["rows"]), key=str)
    assert [r["method"] for r in after["rows"] if r["kind"] == "peer"] == ["label_frequency"]
    assert after["cells"]["emotions:0"]["config"]["peers"] == ["label_frequency"]
    assert compare_orderings.grid_finished(args)  # the refreshed cell counts as done for these peers
    assert after["command"] == before["command"]  # the table still names the run that trained the chains
    assert (
        "Peer rows scored again (chain rows kept) by: `python experiments/compare_orderings.py"
        in (out / "orderings.md").read_text()
    )


def test_add_peers_keeps_every_other_row_and_adds_only_the_new_peer(tmp_path, monkeypatch):
    """--peers-only --add-peers on a hand-made file: the chain and old peer rows stay as they are, the
    cell's peer list grows, and the report changes only by the new rows and the line naming the command."""
    metrics = lambda v: {m: v for m in TABLE_METRICS}  # noqa: E731
    row = lambda method, kind, v: {  # noqa: E731
        "dataset": "emotions",
        "seed": 0,
        "method": method,
        "kind": kind,
        "metrics": metrics(v),
        "wall_time_s": 1.0,
    }
    old_rows = [row("rearrange", "dynamic", 0.5), row("ovr_logistic", "peer", 0.6), row("omikuji", "peer", 0.7)]
    results = {
        "cells": {
            "emotions:0": {
                "dataset": "emotions",
                "seed": 0,
                "config": {"train_rl": {}, "peers": ["ovr_logistic", "omikuji"]},
                "peers_command": "python old-peers",
                "command": "python chains",
            }
        },
        "rows": [dict(r) for r in old_rows],
        "skipped_peers": [],
        "command": "python chains",
    }
    before = render_markdown(json.loads(json.dumps(results)))
    monkeypatch.setattr(compare_orderings, "score_peers", lambda args, d, s, *more: ([row("ecc", "peer", 0.65)], []))
    args = Args(datasets=["emotions"], seeds=[0], peers=["ecc"], peers_only=True, add_peers=True)
    assert compare_orderings.refresh_peers(args, results, tmp_path, "python add-ecc") == []
    assert [r for r in results["rows"] if r["method"] != "ecc"] == old_rows
    cell = results["cells"]["emotions:0"]
    assert cell["config"]["peers"] == ["ovr_logistic", "omikuji", "ecc"]
    assert (cell["peers_command"], cell["added_peers_commands"]) == ("python old-peers", {"ecc": "python add-ecc"})
    after = (tmp_path / "orderings.md").read_text()
    new_lines = [line for line in after.splitlines() if line not in before.splitlines()]
    assert new_lines == [
        "| ecc | peer | 1 | " + " | ".join(["65.00"] * len(TABLE_METRICS)) + " | 1 |",
        "Peer rows added (other rows kept) by: `python add-ecc` (ecc)",
    ]
    assert [line for line in before.splitlines() if line not in after.splitlines()] == []
    with pytest.raises(ArgsError, match="--add-peers needs --peers-only"):
        resolve_args(Args(add_peers=True))


def test_quick_keeps_typed_datasets_and_seeds(tmp_path):
    """Issue 19 re-probe: `--quick --datasets nosuch` trained emotions with rc 0 (a typed flag replaced
    without a word); --quick now fills only what was not typed."""
    with pytest.raises(ArgsError, match="--datasets nosuch"):
        resolve_args(parse_args(Args, ["--quick", "--datasets", "nosuch", "--runs-dir", str(tmp_path)]))
    typed = resolve_args(
        parse_args(Args, ["--quick", "--datasets", "scene", "--seeds", "3", "4", "--runs-dir", str(tmp_path)])
    )
    assert (typed.datasets, typed.seeds) == (["scene"], [3, 4])
    plain = resolve_args(parse_args(Args, ["--quick", "--runs-dir", str(tmp_path)]))
    assert (plain.datasets, plain.seeds, plain.updates) == (["emotions"], [0], 30)


def test_an_unwritable_out_dir_is_one_line_before_any_cell(tmp_path):
    """Issue 19 re-probe: `--out-dir /proc/x` was a FileNotFoundError traceback."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ArgsError, match=f"--out-dir {blocker / 'sub'}: cannot write there"):
        main(quick_args(tmp_path, out_dir=str(blocker / "sub")))
    assert not (tmp_path / "runs").exists()


def test_a_cell_merges_into_the_file_on_disk_not_a_stale_copy(tmp_path):
    """Two grids writing one --out-dir (a --redo beside a running grid) keep each other's cells."""
    metrics = {m: 0.5 for m in TABLE_METRICS}

    def cell(dataset: str, value: float) -> dict:
        row = {
            "dataset": dataset,
            "seed": 0,
            "method": "rearrange",
            "kind": "dynamic",
            "metrics": dict(metrics, **{"P@1": value}),
        }
        return {"dataset": dataset, "seed": 0, "rows": [row], "skipped_peers": [], "run_dir": str(tmp_path)}

    stale = compare_orderings.load_results(tmp_path / "orderings.json")  # what a grid holds from its start
    compare_orderings.merge_cell_into_file(tmp_path, cell("emotions", 0.7))  # another grid's cell lands
    merged = compare_orderings.merge_cell_into_file(tmp_path, cell("scene", 0.6))
    assert stale["rows"] == []
    on_disk = compare_orderings.load_results(tmp_path / "orderings.json")
    assert {(r["dataset"], r["metrics"]["P@1"]) for r in on_disk["rows"]} == {("emotions", 0.7), ("scene", 0.6)}
    assert merged["rows"] == on_disk["rows"]
    compare_orderings.merge_cell_into_file(tmp_path, cell("emotions", 0.8))  # a redo replaces its own cell
    rows = compare_orderings.load_results(tmp_path / "orderings.json")["rows"]
    assert sorted((r["dataset"], r["metrics"]["P@1"]) for r in rows) == [("emotions", 0.8), ("scene", 0.6)]

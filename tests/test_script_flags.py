"""One flag vocabulary: every script's flags come from a dataclass Args; deprecated spellings still work."""

from __future__ import annotations

import json

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
        assert names[:4] == ["threads", "backend", "address", "jobs"], module.__name__
    args = score_modes.Args(backend="local", address="auto", jobs=0)
    assert args.execution_problems() == ["--address auto needs --backend ray", "--jobs must be >= 1, got 0"]
    seen = {}
    monkeypatch.setattr(execution, "run_cells", lambda cells, on_result, **kw: seen.update(kw) or ["x"])
    assert score_modes.Args(jobs=3, threads=2).run_grid([], print, metric="P@1") == ["x"]
    assert seen == {"backend": "local", "address": None, "jobs": 3, "threads": 2, "metric": "P@1"}

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

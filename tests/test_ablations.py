"""experiments/ablations.py: one factor per variant, the shared warm start, resume, and the table's numbers."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from labelchain.experiments import ablations, train_rl
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.grid.lookup import run_config
from labelchain.experiments.ablations import (
    VARIANTS,
    WARM_START,
    Args,
    main,
    render_markdown,
    resolve_args,
    variant_args,
)


def quick_args(tmp: Path, **changes) -> Args:
    return replace(
        Args(
            quick=True,
            variants=["default", "rl_weight_0.5", "scratch"],
            warm_updates=8,
            updates=4,
            runs_dir=str(tmp / "runs"),
            out_dir=str(tmp / "results"),
            progress=False,
        ),
        **changes,
    )


def test_each_variant_changes_one_factor_of_the_default():
    args = resolve_args(Args())
    default = asdict(variant_args(args, "default", 0, "warm/policy"))
    for name, (_, _, overrides) in VARIANTS.items():
        changed = {
            k
            for k, v in asdict(variant_args(args, name, 0, "warm/policy")).items()
            if v != default[k] and k != "group_name"
        }
        expected = set(overrides) | ({"updates"} if name == "scratch" else set())
        assert changed == expected, name
    scratch = variant_args(args, "scratch", 0, "warm/policy")
    assert scratch.warm_start is None and scratch.updates == args.warm_updates + args.updates == 1800
    assert default["learners"] == ["combined"] and default["reward"] == "f1" and default["reward_mode"] == "delta"


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ArgsError, match="--variants"):
        resolve_args(quick_args(tmp_path, variants=["default", "nope"]))
    with pytest.raises(ArgsError, match="--seeds"):
        resolve_args(quick_args(tmp_path, seeds=[]))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ablations.json").write_text("[1, 2]")
    with pytest.raises(ArgsError, match="ablations.json: not an ablations results file"):
        main(quick_args(tmp_path))


@pytest.mark.needs_data
@pytest.mark.slow
def test_quick_grid_shares_one_warm_start_and_resumes(tmp_path, monkeypatch):
    path = main(quick_args(tmp_path))
    results = json.loads(path.read_text())
    entries = results["entries"]
    assert sorted(entries) == sorted(f"{v}:0" for v in (WARM_START, "default", "rl_weight_0.5", "scratch"))
    warm_policy = str(Path(entries[f"{WARM_START}:0"]["run_dir"]) / "rearrange" / "policy")
    assert entries["default:0"]["config"]["warm_start"] == warm_policy
    assert entries["rl_weight_0.5:0"]["config"]["warm_start"] == warm_policy
    assert entries["rl_weight_0.5:0"]["config"]["rl_weight"] == 0.5
    assert entries["scratch:0"]["config"]["warm_start"] is None and entries["scratch:0"]["updates"] == 12
    for entry in entries.values():
        assert entry["config"]["dataset"] == "emotions"
        for split in ("test", "val"):
            assert all(0.0 <= entry[split][m] <= 1.0 for m in ablations.TABLE_METRICS)
        words = shlex.split(entry["command"])
        assert words[:2] == ["python", "experiments/train_rl.py"]  # the command reproduces the run exactly
        assert run_config(parse_args(train_rl_args.Args, words[2:])) == entry["config"]
        assert Path(entry["run_dir"], "metrics.json").is_file()
    assert "--warm-start " + warm_policy in entries["default:0"]["command"]
    assert len(list((tmp_path / "runs").glob("emotions__abl-*"))) == 4
    table = (tmp_path / "results" / "ablations.md").read_text()
    assert "| rl_weight_0.5 | rl_weight | 0.5 | 1 |" in table and "| scratch |" in table

    calls = []
    real_main = train_rl.main
    monkeypatch.setattr(train_rl, "main", lambda run: calls.append(run) or real_main(run))
    main(quick_args(tmp_path))  # everything done: nothing trains
    assert calls == []
    main(quick_args(tmp_path, variants=["default", "entropy_0"]))  # one new variant, same warm start
    assert [c.group_name for c in calls] == ["abl-entropy-0"] and calls[0].warm_start == warm_policy
    assert len(json.loads(path.read_text())["entries"]) == 5


def test_markdown_means_and_sample_stds_from_entries():
    def entry(variant: str, seed: int, p1: float) -> dict:
        metrics = {m: 0.5 for m in ablations.TABLE_METRICS} | {"P@1": p1}
        factor, setting, _ = VARIANTS[variant]
        return {
            "variant": variant,
            "seed": seed,
            "factor": factor,
            "setting": setting,
            "test": metrics,
            "val": metrics,
            "wall_time_s": 10.0 * (seed + 1),
        }

    results = {
        "entries": {f"default:{s}": entry("default", s, p) for s, p in enumerate((0.1, 0.2, 0.3))}
        | {"entropy_0:0": entry("entropy_0", 0, 0.4)}
    }
    lines = render_markdown(results).splitlines()
    default_row = next(line for line in lines if line.startswith("| default |"))
    assert default_row.split(" | ")[3:6] == ["3", "20.00 ± 10.00", "50.00 ± 0.00"]
    assert default_row.endswith("| 20 |")
    entropy_row = next(line for line in lines if line.startswith("| entropy_0 |"))
    assert entropy_row.split(" | ")[3:5] == ["1", "40.00"]
    assert lines.index(default_row) < lines.index(entropy_row)

"""The main job's numbers are pinned: `python experiments/train_rl.py --dataset emotions --updates 60
--eval-every 20` (every other flag at its default) writes the metrics.json it wrote before the one
configuration and the one policy factory (fixture from commit 068d934, timings left out).

A change of a default, of the factory's weight draw, of the learning-rate or patience rule shows
up here as a changed metric.
"""

import json
from pathlib import Path

import pytest

from labelchain.experiments.run.train_rl_args import Args
from labelchain.experiments.train_rl import main

PINNED = Path(__file__).parent / "fixtures" / "main_job_emotions_60.json"


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "timing" and "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.mark.slow
@pytest.mark.needs_data
def test_main_job_writes_the_pinned_metrics(tmp_path):
    run_dir = main(Args(dataset="emotions", updates=60, eval_every=20, progress=False, runs_dir=str(tmp_path)))
    got = without_timings(json.loads((run_dir / "metrics.json").read_text()))
    expected = json.loads(PINNED.read_text())
    assert _close(got, expected)


def _close(got, expected, path: str = "metrics") -> bool:
    """Equal structure, strings and ints; floats within 1e-9 (the path of the first difference is named)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), f"{path}: keys {sorted(got)}"
        return all(_close(got[k], expected[k], f"{path}.{k}") for k in expected)
    if isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), path
        return all(_close(g, e, f"{path}[{i}]") for i, (g, e) in enumerate(zip(got, expected, strict=True)))
    if isinstance(expected, float) and isinstance(got, float):
        assert got == pytest.approx(expected, abs=1e-9), f"{path}: {got} != {expected}"
        return True
    assert got == expected, f"{path}: {got!r} != {expected!r}"
    return True

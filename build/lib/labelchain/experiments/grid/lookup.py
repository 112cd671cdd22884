"""Finding train_rl runs by configuration, so the grids (compare_orderings, ablations) skip or resume work.

A run's configuration is its train_rl Args minus the fields that only say where or how to show it.
A config saved before a field existed reads that field at its default, so a new train_rl knob must
default to the behaviour runs had before it existed; then finished runs stay valid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

from labelchain.experiments import train_rl
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.folder import CONFIG_FILE, METRICS_FILE, run_name_part

NOT_CONFIG = ("resume", "progress", "stop_after_updates", "runs_dir", "data_dir", "group_name", "quick", "config")


def run_config(run: train_rl_args.Args | dict[str, Any]) -> dict[str, Any]:
    """What makes a run (JSON-normalised, so it compares equal to a config read back from disk)."""
    values = asdict(run) if is_dataclass(run) else dict(run)
    values = {**asdict(train_rl_args.Args()), **values}
    return json.loads(json.dumps({key: value for key, value in values.items() if key not in NOT_CONFIG}))


def find_run(run: train_rl_args.Args) -> Path | None:
    """The newest folder under run.runs_dir of this dataset, group and seed with exactly this configuration."""
    want = run_config(run)
    group = run.group_name or train_rl_args.group_label(run)
    pattern = f"{run_name_part(run.dataset)}__{group}__{run.seed}__*"
    for folder in sorted(Path(run.runs_dir).glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            saved = json.loads((folder / CONFIG_FILE).read_text())["args"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a folder made in the same second as a crash, before config.json was written
        if run_config(saved) == want:
            return folder
    return None


def train_or_resume(run: train_rl_args.Args) -> Path:
    """The finished run of this configuration: reused, continued from its checkpoints, or trained.

    The folder returned has no metrics.json when training was stopped (Ctrl-C) before the end.
    """
    folder = find_run(run)
    if folder is not None and (folder / METRICS_FILE).exists():
        return folder
    return train_rl.main(run if folder is None else replace(run, resume=str(folder)))

"""The orderings table's rows of one grid cell, read from its finished train_rl run folder.

Kept apart from compare_orderings.py, which schedules the grid and merges cells into orderings.json:
this is only how a run folder's metrics.json and config.json become rows (one per learner, plus
best_fixed and ensemble) with their configuration and training wall time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labelchain.agents.learners import FIXED_ORDERINGS
from labelchain.experiments.run.folder import CONFIG_FILE, METRICS_FILE


def learner_kind(name: str) -> str:
    return "fixed" if name in FIXED_ORDERINGS else "dynamic"


def rows_from_run(run_dir: Path, dataset: str, seed: int) -> list[dict[str, Any]]:
    """One row per learner, plus best_fixed and ensemble, from train_rl's metrics.json/config.json."""
    report = json.loads((run_dir / METRICS_FILE).read_text())
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    derived = saved["derived"]
    shared = {
        key: saved["args"][key] for key in ("updates", "hidden_size", "eval_every", "select_metric", "val_fraction")
    }
    base = {"dataset": dataset, "seed": seed, "run_dir": str(run_dir)}
    rows, wall = [], {}
    for name, result in report["learners"].items():
        wall[name] = sum(result["timing"].values())
        learner_config = derived["learner_config"]
        learner_config = learner_config.get(name, learner_config)  # per learner (RL has its own lr) or shared
        config = {
            "learner": name,
            **shared,
            **learner_config,
            "warm_start": derived["warm_start"].get(name),
            "best_update": result["best_update"],
        }
        rows.append(
            {
                **base,
                "method": name,
                "kind": learner_kind(name),
                "metrics": result["test"],
                "val": result["val"],
                "config": config,
                "wall_time_s": wall[name],
            }
        )
    if "best_fixed" in report:
        chosen = report["best_fixed"]["learner"]
        rows.append(
            {
                **base,
                "method": "best_fixed",
                "kind": "best_fixed",
                "chosen": chosen,
                "metrics": report["best_fixed"]["test"],
                "val": report["best_fixed"]["val"],
                "config": {
                    "rule": f"fixed ordering with the best validation {report['select_metric']}",
                    "chosen": chosen,
                },
                "wall_time_s": wall[chosen],
            }
        )
    if "ensemble" in report:
        ensemble = report["ensemble"]
        config = {key: value for key, value in ensemble.items() if key != "test"}
        rows.append(
            {
                **base,
                "method": "ensemble",
                "kind": "ensemble",
                "metrics": ensemble["test"],
                "config": config,
                "wall_time_s": sum(wall[m] for m in ensemble["members"]),
            }
        )  # members' training, not fusion
    return rows

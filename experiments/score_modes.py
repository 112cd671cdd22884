"""Which ranking score should the chain policy give? Position vs label marginals vs the auxiliary head.

    python experiments/score_modes.py --datasets bibtex delicious --aux-weights 0 0.01 0.1
    python experiments/score_modes.py --jobs 2                # two cells at a time (or --backend ray)

For each dataset and auxiliary-head weight, trains the rearrangement learner (the chains' main
learner) with early stopping on validation nDCG@5 (agents.training.train_epochs, small budget), then
scores the validation split with every score mode of agents.decoding.predict that the policy
supports. Validation only: this chooses defaults, so the test split is not looked at. Prints a
table, writes experiments/results/score_modes.json and prints one JSON line. Each dataset x weight is
one independent cell run through experiments/grid/execution.py (--backend local|ray, --address, --jobs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from labelchain.agents.config import DEFAULTS as D, Config
from labelchain.agents.decoding import SCORE_MODES, predict
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.supervised import carve_validation
from labelchain.agents.training import train_epochs
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import HEADLINE, evaluate
from labelchain.experiments.grid.results_file import ResultsFile, save_results
from labelchain.experiments.run.common import (
    REPO_ROOT,
    Renames,
    out_to_out_dir,
    parse_args,
    resolve_device,
)
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.grid.execution import ExecutionFlags, runs_dir_flag
from labelchain.experiments.run.threads import set_threads


@dataclass
class Args(ExecutionFlags):
    """Compare ranking score modes (and the auxiliary head's weight) on validation."""

    RENAMED: ClassVar[Renames] = {"out": ("out_dir", out_to_out_dir("score_modes"))}  # before issue 20: the file

    datasets: list[str] = field(default_factory=lambda: ["bibtex", "delicious"])
    aux_weights: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.1])
    learner: str = "rearrange"
    epochs: int = 4
    hidden_size: int = D.policy.hidden_size
    n_samples: int = 16
    seed: int = 0
    val_fraction: float = D.run.val_fraction
    device: str = "auto"
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    out_dir: str = field(
        default=str(REPO_ROOT / "experiments" / "results"), metadata={"help": "results folder (score_modes.json)"}
    )
    runs_dir: str = runs_dir_flag("runs/score_modes")


def run_one(args: Args, dataset: str, aux_weight: float) -> dict[str, Any]:
    """One cell: train at this weight, score validation with every mode; {"rows": [...]}."""
    device = resolve_device(args.device)
    ds = load_dataset(dataset, args.data_dir)
    train, val = carve_validation(ds.train, args.val_fraction, args.seed)
    torch.manual_seed(args.seed)
    architecture = PolicyConfig(ds.n_features, ds.n_labels, hidden_size=args.hidden_size, aux_weight=aux_weight)
    policy = build_policy(architecture, train).to(device)
    # patience 2 under the one rule (agents.training.out_of_patience) = the 1 score_modes.json ran with
    # when this loop stopped after patience + 1 epochs without improvement
    config = Config.of(epochs=args.epochs, seed=args.seed, select_metric="nDCG@5", patience=2)
    started = time.perf_counter()
    history = train_epochs(
        policy, train, config, learner=args.learner, label_freq=ds.label_freq, val=val, progress=False
    )
    train_seconds = time.perf_counter() - started
    rows = []
    for mode in SCORE_MODES:
        if mode in ("aux", "position_aux") and aux_weight == 0:
            continue
        started = time.perf_counter()
        _, scores = predict(policy, val.X, score_mode=mode, n_samples=args.n_samples, seed=args.seed)
        rows.append(
            {
                "dataset": dataset,
                "aux_weight": aux_weight,
                "score_mode": mode,
                "val": evaluate(val.Y, scores=scores),
                "score_seconds": time.perf_counter() - started,
                "train_seconds": train_seconds,
                "best_epoch": history.best_epoch,
            }
        )
    return {"rows": rows}


def cell_key(dataset: str, aux_weight: float) -> str:
    return f"{dataset}:aux{aux_weight:g}"


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    device = resolve_device(args.device)  # fail early on a bad --device
    problems = args.execution_problems()
    if problems:
        raise SystemExit("; ".join(problems))
    grid = [(dataset, weight) for dataset in args.datasets for weight in args.aux_weights]
    finished: dict[str, list[dict]] = {}

    def record(key: str, result: dict[str, Any]) -> None:
        finished[key] = result["rows"]
        print(f"done {key}", flush=True)

    grid_cells = [Cell(cell_key(d, w), run_one, {"args": args, "dataset": d, "aux_weight": w}) for d, w in grid]
    failed = args.run_grid(
        grid_cells,
        record,
        metric="nDCG@5",
        progress=False,  # each finished cell prints a line
    )
    if failed:
        raise SystemExit(f"score_modes: cells {', '.join(failed)} failed (see above); nothing written")
    rows = [row for d, w in grid for row in finished[cell_key(d, w)]]  # grid order, whatever finished first
    print(f"{'dataset':<11}{'aux_w':>7} {'score':<13}" + "".join(f"{m:>9}" for m in HEADLINE) + f"{'score s':>9}")
    for row in rows:
        cells = "".join(f"{100 * row['val'][m]:>9.2f}" for m in HEADLINE)
        print(f"{row['dataset']:<11}{row['aux_weight']:>7g} {row['score_mode']:<13}{cells}{row['score_seconds']:>9.1f}")
    result = {"args": vars(args), "device": str(device), "rows": rows}
    save_results(
        Path(args.out_dir) / "score_modes.json",
        ResultsFile("score_modes", rows, args=vars(args), sections={"device": str(device)}),
    )
    print(
        json.dumps(
            {
                "rows": [
                    {k: r[k] for k in ("dataset", "aux_weight", "score_mode")}
                    | {"nDCG@5": r["val"]["nDCG@5"], "P@1": r["val"]["P@1"]}
                    for r in rows
                ]
            }
        )
    )
    return result


if __name__ == "__main__":
    main(parse_args(Args))

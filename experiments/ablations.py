"""Ablations of the combined objective on one dataset: reward, reward mode, RL weight, warm start, entropy.

    python experiments/ablations.py                       # bibtex, seeds 0 1 2, every variant
    python experiments/ablations.py --variants default entropy_0.05 --seeds 0
    python experiments/ablations.py --quick               # emotions, 1 seed, tiny budget (smoke test)
    python experiments/ablations.py --backend ray --jobs 2    # every run a Ray Tune trial (or --address auto)

One factor at a time around the default combined learner (train_rl's defaults: reward f1, per-step
"delta" rewards, rl_weight 0.9, entropy 0.01, warm start from target rearrangement). Every variant is
one `train_rl.main` run with `--learners combined` (the project's one training loop), so its curves,
checkpoints and best-on-validation policy live in a normal run folder under `--runs-dir`.

Warm starts cost as much as the RL runs, so the rearrangement policy is trained ONCE per seed
(`--warm-updates` updates, its own run folder) and every warm-started variant of that seed gets its
policy folder through `--warm-start`: all variants of a seed start from the very same weights. The
from-scratch variant gets `warm_updates + updates` updates, the same number of optimisation steps as
the warm-started ones in total. The warm-start policy itself is reported as a reference row.

Results (test and validation metrics, best update, wall time, the equivalent train_rl command) go to
`ablations.json` after every run (atomic write) and `ablations.md` (mean ± std over seeds) is rebuilt
from it. Rerunning the same command skips finished entries and resumes unfinished run folders.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labelchain.experiments.grid import results_file
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.common import (
    results_dir,
    atomic_write_text,
    command_line,
    mean_and_std,
    parse_args,
    percent_mean_std,
)
from labelchain.experiments.run.config import ArgsError, TrainKnobs, check_args, knobs_of, override
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.grid.execution import ExecutionFlags, runs_dir_flag
from labelchain.experiments.grid.lookup import find_run, run_config, train_or_resume
from labelchain.experiments.run.folder import METRICS_FILE, POLICY_DIR, GracefulInterrupt, run_script
from labelchain.experiments.run.threads import set_threads

SCRIPT = "experiments/ablations.py"
WARM_START = "warm_start"  # the reference row: the rearrangement policy every warm variant starts from
# variant -> (factor, setting shown in the table, train_rl_args.Args overrides of the default combined learner)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "default": ("default", "f1, delta, w=0.9, warm, ent=0.01", {}),
    "reward_jaccard": ("reward", "jaccard", {"reward": "jaccard"}),
    "reward_subset_accuracy": ("reward", "subset_accuracy", {"reward": "subset_accuracy"}),
    "reward_terminal": ("reward mode", "terminal", {"reward_mode": "terminal"}),
    "rl_weight_0.5": ("rl_weight", "0.5", {"rl_weight": 0.5}),
    "rl_weight_1.0": ("rl_weight", "1.0 (pure RL)", {"rl_weight": 1.0}),
    "scratch": ("warm start", "none (from scratch)", {"warm_start": None}),
    "entropy_0": ("entropy_coef", "0", {"entropy_coef": 0.0}),
    "entropy_0.05": ("entropy_coef", "0.05", {"entropy_coef": 0.05}),
}
TABLE_METRICS = ("P@1", "P@3", "nDCG@3", "P@5", "nDCG@5", "example_f1", "micro_f1", "subset_accuracy")


@dataclass
class Args(TrainKnobs, ExecutionFlags):
    """One-factor-at-a-time ablations of the combined objective (reward, weight, warm start, entropy).

    The training knobs (TrainKnobs) set the default variant; each variant then changes one factor.
    """

    updates: int = override("updates", 800, "updates of each combined variant (from scratch: warm_updates + updates)")
    eval_every: int = override("eval_every", 100)
    dataset: str = field(default="bibtex", metadata={"help": "dataset name or folder (see envs.data.loading)"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"at_least": 0})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": f"from {list(VARIANTS)}"})
    warm_updates: int = field(
        default=1000, metadata={"help": "updates of the per-seed rearrangement warm start", "at_least": 1}
    )
    runs_dir: str = runs_dir_flag("runs/ablations")
    out_dir: str | None = field(
        default=None,
        metadata={"help": "ablations.json/.md go here (default experiments/results; with --quick: RUNS_DIR/quick)"},
    )
    quick: bool = field(default=False, metadata={"help": "smoke test: emotions, first seed, 30+20 updates, hidden 32"})


def resolve_args(args: Args) -> Args:
    args = replace(args)
    if args.quick:
        args.dataset, args.seeds = "emotions", args.seeds[:1]
        args.warm_updates, args.updates = min(args.warm_updates, 30), min(args.updates, 20)
        args.eval_every, args.hidden_size = 10, min(args.hidden_size, 32)
    args.out_dir = str(results_dir(args.out_dir, args.runs_dir, args.quick))
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown or not args.variants or len(set(args.variants)) != len(args.variants):
        raise ArgsError(f"--variants must be distinct names from {list(VARIANTS)}, got {args.variants}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise ArgsError(f"--seeds must be distinct integers, got {args.seeds}")
    problems = check_args(args) + args.execution_problems()
    if problems:
        raise ArgsError("; ".join(problems))
    for name in args.variants:  # checks every knob
        train_rl_args.resolve_args(variant_args(args, name, args.seeds[0], warm_policy=None))
    return args


# ----------------------------------------------------------------------------- the runs
def base_args(args: Args, seed: int) -> train_rl_args.Args:
    """The default variant: the combined learner with every knob as given."""
    return train_rl_args.Args(
        **knobs_of(args), dataset=args.dataset, learners=["combined"], ensemble=[], seed=seed, runs_dir=args.runs_dir
    )


def warm_start_args(args: Args, seed: int) -> train_rl_args.Args:
    """The per-seed rearrangement run every warm-started variant of `seed` starts from."""
    return replace(
        base_args(args, seed), learners=["rearrange"], updates=args.warm_updates, warm_start=None, group_name="abl-warm"
    )


def variant_args(args: Args, name: str, seed: int, warm_policy: str | None) -> train_rl_args.Args:
    """train_rl_args.Args of one variant; `warm_policy` is the seed's rearrangement policy folder."""
    overrides = dict(VARIANTS[name][2])
    run = replace(base_args(args, seed), group_name=f"abl-{name}".replace("_", "-"), warm_start=warm_policy)
    if "warm_start" in overrides and overrides["warm_start"] is None:
        overrides["updates"] = args.warm_updates + args.updates  # same optimisation steps in total
    return replace(run, **overrides)


def train(run: train_rl_args.Args) -> tuple[Path, float]:
    """Reuse, continue or train the run of this configuration; (run folder, seconds this call took)."""
    started = time.perf_counter()
    return train_or_resume(run), time.perf_counter() - started


def run_cell(args: Args, variant: str, seed: int, warm_policy: str | None) -> dict[str, Any] | None:
    """One ablation run as a grid cell: its results entry, None when stopped (Ctrl-C)."""
    quiet = args if args.backend == "local" and args.jobs == 1 else replace(args, progress=False)
    run = warm_start_args(quiet, seed) if variant == WARM_START else variant_args(quiet, variant, seed, warm_policy)
    folder, seconds = train(run)
    if not (folder / METRICS_FILE).exists():
        return None
    learner = "rearrange" if variant == WARM_START else "combined"
    return entry_from_run(folder, learner, variant, seed, run, seconds)


def entry_from_run(
    folder: Path, learner: str, variant: str, seed: int, run: train_rl_args.Args, seconds: float
) -> dict:
    report = json.loads((folder / METRICS_FILE).read_text())
    result = report["learners"][learner]
    factor, setting, overrides = VARIANTS[variant] if variant in VARIANTS else ("reference", "rearrange only", {})
    return {
        "variant": variant,
        "seed": seed,
        "factor": factor,
        "setting": setting,
        "overrides": overrides,
        "learner": learner,
        "test": result["test"],
        "val": result["val"],
        "best_update": result["best_update"],
        "updates": result["updates"],
        "wall_time_s": seconds,
        "train_seconds": result["timing"]["train_seconds"],
        "run_dir": str(folder),
        "config": run_config(run),
        "command": command_line(run, "experiments/train_rl.py", skip=("progress", "quick")),
    }


# ----------------------------------------------------------------------------- results
def entry_key(variant: str, seed: int) -> str:
    return f"{variant}:{seed}"


def load_results(path: Path) -> dict[str, Any]:
    """ablations.json (any format: experiments/grid/results_file.py) as the flat dict the grid updates."""
    try:
        results = results_file.load_results(path, "ablations", missing_ok=True).payload()
        if not isinstance(results.setdefault("entries", {}), dict):
            raise results_file.ResultsFileError(path, "'entries' must be an object")
    except results_file.ResultsFileError as error:
        raise ArgsError(
            f"{path}: not an ablations results file ({error.reason}); move it away or pick another --out-dir"
        ) from None
    return results


def is_done(results: dict[str, Any], variant: str, seed: int, run: train_rl_args.Args) -> bool:
    entry = results["entries"].get(entry_key(variant, seed))
    return entry is not None and run_config(entry.get("config", {})) == run_config(run)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant (reference row first, then VARIANTS order): seeds, mean/std per metric, wall time."""
    by_variant: dict[str, list[dict]] = {}
    for entry in sorted(results["entries"].values(), key=lambda e: e["seed"]):
        by_variant.setdefault(entry["variant"], []).append(entry)
    rank = {name: i for i, name in enumerate([WARM_START, *VARIANTS])}
    rows = []
    for variant in sorted(by_variant, key=lambda v: (rank.get(v, len(rank)), v)):
        entries = by_variant[variant]
        rows.append(
            {
                "variant": variant,
                "factor": entries[0]["factor"],
                "setting": entries[0]["setting"],
                "seeds": [e["seed"] for e in entries],
                "test": {m: mean_and_std([float(e["test"].get(m, math.nan)) for e in entries]) for m in TABLE_METRICS},
                "val": {m: mean_and_std([float(e["val"].get(m, math.nan)) for e in entries]) for m in TABLE_METRICS},
                "wall_time_s": mean_and_std([float(e["wall_time_s"]) for e in entries]),
            }
        )
    return rows


def render_markdown(results: dict[str, Any]) -> str:
    """ablations.md: test metrics ×100 as mean ± std over seeds, one row per variant."""
    rows = summary_rows(results)
    lines = ["# Ablations of the combined objective", ""]
    if "command" in results:
        lines += [f"Command: `{results['command']}`", ""]
    args = results.get("args", {})
    if args:
        lines += [
            f"Dataset {args.get('dataset')}; seeds {args.get('seeds')}; warm start: rearrangement, "
            f"{args.get('warm_updates')} updates, trained once per seed; each variant {args.get('updates')} "
            f"combined updates on top (from scratch: {args.get('warm_updates', 0) + args.get('updates', 0)}); "
            f"checkpoint chosen on validation {args.get('select_metric')}. Test metrics ×100, mean ± std "
            "over seeds; wall time per run in seconds.",
            "",
        ]
    lines += [
        "| variant | factor | setting | seeds | " + " | ".join(TABLE_METRICS) + " | wall s |",
        "|" + "---|" * (len(TABLE_METRICS) + 5),
    ]
    for row in rows:
        cells = []
        for metric in TABLE_METRICS:
            mean, std = row["test"][metric]
            cells.append(percent_mean_std(mean, std, len(row["seeds"])))
        lines.append(
            f"| {row['variant']} | {row['factor']} | {row['setting']} | {len(row['seeds'])} | "
            + " | ".join(cells)
            + f" | {row['wall_time_s'][0]:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, results: dict[str, Any]) -> None:
    results_file.save_results(out_dir / "ablations.json", results_file.ResultsFile.from_payload(results, "ablations"))
    atomic_write_text(out_dir / "ablations.md", render_markdown(results))


# ----------------------------------------------------------------------------- main
def main(args: Args) -> Path:
    """Train every missing (variant, seed), seeds-major, writing results after each; returns the json path."""
    set_threads(args.threads or 1)
    given, args = args, resolve_args(args)
    out_dir = results_dir(args.out_dir, args.runs_dir, args.quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(out_dir / "ablations.json")
    results.update(command=command_line(given, SCRIPT), argv=sys.argv, args=asdict(args), metrics=list(TABLE_METRICS))
    write_results(out_dir, results)
    needs_warm = any(VARIANTS[v][2].get("warm_start", "rearrange") is not None for v in args.variants)

    def cell(variant: str, seed: int, warm_policy: str | None = None) -> Cell:
        return Cell(
            entry_key(variant, seed),
            run_cell,
            {"args": args, "variant": variant, "seed": seed, "warm_policy": warm_policy},
        )

    def record(key: str, entry: dict[str, Any]) -> None:
        results["entries"][key] = entry
        write_results(out_dir, results)

    def warm_policy(seed: int) -> str | None:
        entry = results["entries"].get(entry_key(WARM_START, seed))
        return None if entry is None else str(Path(entry["run_dir"]) / "rearrange" / POLICY_DIR)

    def run(cells: list[Cell]) -> None:
        args.run_grid(
            cells,
            record,
            metric=args.select_metric,
            progress=args.progress,
            should_stop=lambda: interrupt.requested,
        )

    with GracefulInterrupt() as interrupt:  # train_rl installs its own; this one only stops between runs
        # First every seed's warm start (the variants of a seed start from it), then every variant.
        run(
            [
                cell(WARM_START, seed)
                for seed in args.seeds
                if needs_warm
                and not (
                    is_done(results, WARM_START, seed, warm_start_args(args, seed))
                    and find_run(warm_start_args(args, seed))
                )
            ]
        )
        ready = [seed for seed in args.seeds if not needs_warm or warm_policy(seed) is not None]
        if not interrupt.requested:
            run(
                [
                    cell(variant, seed, warm_policy(seed))
                    for seed in ready
                    for variant in args.variants
                    if not is_done(results, variant, seed, variant_args(args, variant, seed, warm_policy(seed)))
                ]
            )
    print(f"\nresults: {out_dir / 'ablations.json'}\ntable:   {out_dir / 'ablations.md'}")
    return out_dir / "ablations.json"


def finished(args: Args) -> bool:
    resolved = resolve_args(args)
    results = load_results(results_dir(resolved.out_dir, resolved.runs_dir, resolved.quick) / "ablations.json")
    return all(entry_key(v, s) in results["entries"] for v in resolved.variants for s in resolved.seeds)


if __name__ == "__main__":
    cli_args = run_script(lambda: parse_args(Args))
    run_script(lambda: main(cli_args))
    sys.exit(0 if run_script(lambda: finished(cli_args)) else 130)  # 130: stopped early, rerun to resume

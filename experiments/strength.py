"""The strength table: the chain learners at a larger size against tuned peers and a floor.

    python experiments/strength.py --jobs 4 --device auto                  # paper preset, full table
    python experiments/strength.py --backend ray --address auto            # each cell one Ray Tune trial
    python experiments/strength.py --datasets emotions --seeds 0 --preset small   # a quick check
    python experiments/strength.py --prior ovr_logistic --shortlist 50 --out-dir runs/strength_prior

For every dataset x seed (a cell) it trains, with one preset (experiments/run/presets.py) and the same
validation split (train minus a seeded 10% slice):
  * the fixed orderings (best one chosen on validation nDCG@5; when that split holds fewer than
    --min-val-docs documents the choice is the mean over --folds folds, agents.selection), target
    rearrangement, and the combined objective started from rearrangement's ranking checkpoint;
    every chain learner keeps two checkpoints: best validation example F1 (its label sets) and best
    validation nDCG@5 (its ranking scores);
  * ensembles fused on validation (agents.ensemble): chains only (rearrange + combined, with their
    auxiliary heads' scores as extra members) and chains + peers;
  * the peers tuned on the same split (agents.peers: --peers from ovr_logistic, omikuji, ecc) and the
    label-frequency floor.
With --prior (--prior-scale, --shortlist, --no-label-history: train_rl's flags, docs/prior.md) every
chain learner above trains on that peer's cached out-of-fold prior, and its sets and scores come from
the ranking and set rules chosen on validation (experiments/grid/strength_chains.py).
Rows go to experiments/results/strength.json (resumable: finished cells with the same settings are
kept; an interrupted cell reruns), verdicts and tables to strength.md (experiments/reports/strength.py),
each row's test predictions to <out_dir>/predictions/strength/<dataset>/seed<seed>/<method>.npz.
Cells run through experiments/grid/execution.py (--backend local|ray, --address, --jobs); locally with
--jobs 1 an error in a cell propagates, otherwise it is printed and the cell stays missing for a rerun.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelchain.agents.config import DEFAULTS as D, Config
from labelchain.agents.ensemble import Ensemble
from labelchain.agents.learners import FIXED_ORDERINGS
from labelchain.agents.peers import PEERS, PeerUnavailable, tune_peer
from labelchain.agents.precision import check_precision, resolve_precision
from labelchain.agents.selection import needs_folds
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments.run.folder import run_script
from labelchain.experiments.run.common import (
    REPO_ROOT,
    atomic_write_text,
    command_line,
    parse_args,
    resolve_device,
)
from labelchain.experiments.run.config import PRIOR_KNOBS, check_args, knob, override, precision_problems
from labelchain.experiments.grid.strength_chains import (
    RANK_METRIC,
    SET_METRIC,
    ChainFit,
    Output,
    chain_splits,
    check_prior_flags,
    choose_fixed,
    fit_chain,
    prior_setting,
    with_prior_policy,
)
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.grid.execution import ExecutionFlags, runs_dir_flag
from labelchain.experiments.grid.predictions import cell_predictions_dir, save_row_predictions
from labelchain.experiments.grid.results_file import ResultsFile, ResultsFileError, load_results, save_results
from labelchain.experiments.run.presets import PRESETS, preset_record
from labelchain.experiments.reports.strength import render_markdown
from labelchain.experiments.run.threads import set_threads

SCRIPT = "experiments/strength.py"
GRID = "strength"  # rows' test predictions: <out_dir>/predictions/strength/<dataset>/seed<seed>/<method>.npz
PEER_CHOICES = tuple(p for p in PEERS if p != "label_frequency")  # the floor is always scored


@dataclass
class Args(ExecutionFlags):
    """Chains at full strength vs tuned peers and the label-frequency floor, per dataset and seed."""

    datasets: list[str] = field(default_factory=lambda: ["bibtex", "delicious", "reuters21578"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"at_least": 0, "at_most": 2**32 - 1})
    preset: str = field(default="paper", metadata={"help": f"one of {sorted(PRESETS)}"})
    epochs: int | None = field(default=None, metadata={"help": "override the preset's maximum epochs", "at_least": 0})
    combined_epochs: int | None = field(default=None, metadata={"at_least": 0})
    hidden_size: int | None = field(default=None, metadata={"at_least": 1})
    fixed: list[str] = field(default_factory=lambda: list(FIXED_ORDERINGS))
    peers: list[str] = field(
        default_factory=lambda: ["ovr_logistic", "omikuji"], metadata={"help": f"from {PEER_CHOICES} (or none)"}
    )
    val_fraction: float = field(default=D.run.val_fraction, metadata={"above": 0, "below": 1})
    min_val_docs: int = field(
        default=200, metadata={"help": "smaller validation splits select by k folds", "at_least": 0}
    )
    folds: int = field(default=5, metadata={"at_least": 2})  # k-fold selection needs k >= 2
    max_train_docs: int | None = field(
        default=None, metadata={"help": "use only the first N training docs", "at_least": 1}
    )
    device: str = "auto"
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    out_dir: str = str(REPO_ROOT / "experiments" / "results")
    runs_dir: str = runs_dir_flag("runs/strength")
    precision: str = override("precision", "fp32")
    prior: str = knob("prior")  # every chain learner of a cell on this peer's prior (train_rl's flags)
    prior_scale: str = knob("prior_scale")
    shortlist: int = knob("shortlist")
    label_history: bool = knob("label_history")


def plain_preset(args: Args) -> Config:
    """The --preset with the --epochs / --combined-epochs / --hidden-size overrides."""
    if args.preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(PRESETS)}, got {args.preset!r}")
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "combined_epochs", "hidden_size")
        if getattr(args, key) is not None
    }
    return PRESETS[args.preset].changed(**overrides)


def resolve_preset(args: Args) -> Config:
    """What every chain of a cell is built and trained with: `plain_preset` and the --prior flags."""
    return with_prior_policy(plain_preset(args), args)


# ----------------------------------------------------------------------------- one cell
def _row(
    dataset: str,
    seed: int,
    method: str,
    kind: str,
    test_Y,
    output: Output,
    label_freq,
    wall: float,
    config: dict,
    prior: dict | None = None,
) -> dict:
    """One method's row; `prior`: the chain's --prior flags that differ from their defaults (chain rows)."""
    metrics = evaluate(test_Y, scores=output[1], Y_pred=output[0], label_freq=label_freq)
    return {
        "dataset": dataset,
        "seed": seed,
        "method": method,
        "kind": kind,
        "metrics": metrics,
        "wall_time_s": wall,
        "config": config,
        **({"prior": prior} if prior else {}),
    }


def compute_cell(args: Args, dataset: str, seed: int) -> dict:
    started, device, preset = time.perf_counter(), resolve_device(args.device), resolve_preset(args)
    precision = resolve_precision(check_precision(args.precision), device.type)
    ds: Dataset = load_dataset(dataset, args.data_dir)
    source = (
        ds.train if args.max_train_docs is None else ds.train.subset(np.arange(min(args.max_train_docs, len(ds.train))))
    )
    train, val = carve_validation(source, args.val_fraction, seed)
    test = ds.test
    rows: list[dict] = []
    keep = cell_predictions_dir(Path(args.out_dir), GRID, dataset, seed)  # each row's test predictions

    def save(method: str, output: Output) -> None:
        save_row_predictions(keep, method, test.Y, output, dataset=ds, seed=seed, label_freq=ds.label_freq)

    fits: dict[str, ChainFit] = {}
    chain = chain_splits(args, ds, source, train, val, seed)  # with the --prior columns, when given
    prior = prior_setting(args)
    for name in [*args.fixed, "rearrange", "combined"]:
        warm = fits["rearrange"].rank_state if name == "combined" else None
        fits[name] = fit_chain(
            name, chain.train, chain.val, chain.test, preset, seed, device, warm_state=warm, precision=precision
        )
    for name, fit in fits.items():
        assert fit.test is not None and (fit.aux_val is None) == (fit.aux_test is None)
        config = {
            "preset": preset_record(preset),
            "best_epochs": fit.best_epochs,
            "checkpoints": [SET_METRIC, RANK_METRIC] if fit.rules is None else [RANK_METRIC],
            **({"rules": fit.rules} if fit.rules is not None else {}),
        }
        kind = "fixed" if name in FIXED_ORDERINGS else "dynamic"
        rows.append(_row(dataset, seed, name, kind, test.Y, fit.test, ds.label_freq, fit.wall_time_s, config, prior))
        save(name, fit.test)
    best, selection = choose_fixed(args, chain, len(source), fits, preset, seed, device)
    best_row = next(r for r in rows if r["method"] == best)
    rows.append({**best_row, "method": "best_fixed", "kind": "best_fixed", "chosen": best, "selection": selection})
    best_test = fits[best].test
    assert best_test is not None
    save("best_fixed", best_test)
    chain_members = {"rearrange": fits["rearrange"], "combined": fits["combined"]}
    val_out: dict[str, Any] = {name: fit.val for name, fit in chain_members.items()}
    test_out: dict[str, Any] = {name: fit.test for name, fit in chain_members.items()}
    for name, fit in chain_members.items():
        if fit.aux_val is not None:
            val_out[f"{name}_aux"], test_out[f"{name}_aux"] = (None, fit.aux_val), (None, fit.aux_test)
    chain_wall = sum(fit.wall_time_s for fit in chain_members.values())
    peer_wall: dict[str, float] = {}
    skipped = []
    for name in [*args.peers, "label_frequency"]:
        try:
            tuned = tune_peer(name, train, val, seed=seed, ranking_metric=RANK_METRIC, set_metric=SET_METRIC)
        except PeerUnavailable as note:
            skipped.append({"dataset": dataset, "seed": seed, "peer": name, "reason": str(note)})
            continue
        tick = time.perf_counter()
        output = tuned.predict(test.X)
        peer_wall[name] = tuned.timings["tune_time_s"] + time.perf_counter() - tick
        config = {"hyper": tuned.hyper, "set_rule": tuned.set_rule.to_dict(), "search": tuned.search}
        kind = "floor" if name == "label_frequency" else "peer"
        rows.append(_row(dataset, seed, name, kind, test.Y, output, ds.label_freq, peer_wall[name], config))
        save(name, output)
        if kind == "peer":
            val_out[name], test_out[name] = tuned.val_output(), output
    chains = [name for name in val_out if name.split("_aux")[0] in chain_members]
    small_val = needs_folds(len(source), args.val_fraction, args.min_val_docs)  # no weight search then
    for method, members, wall in (
        ("ensemble_chains", chains, chain_wall),
        (
            "ensemble_chains_peers",
            list(val_out),
            chain_wall + sum(peer_wall.get(n, 0.0) for n in val_out if n not in chains),
        ),
    ):
        ensemble = Ensemble().fit(
            [val_out[m] for m in members],
            val.Y,
            ranking_metric=RANK_METRIC,
            set_metric=SET_METRIC,
            search_weights=not small_val,
        )
        output = ensemble.predict([test_out[m] for m in members])
        config = {"members": members, **ensemble.describe(), "validation": ensemble.validation}
        rows.append(_row(dataset, seed, method, "ensemble", test.Y, output, ds.label_freq, wall, config, prior))
        save(method, output)
    data = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "n_labels": ds.n_labels}
    return {
        "dataset": dataset,
        "seed": seed,
        "config": cell_config(args),
        "data": data,
        "rows": rows,
        "skipped_peers": skipped,
        "cell_wall_time_s": time.perf_counter() - started,
    }


# ----------------------------------------------------------------------------- results file
def cell_config(args: Args) -> dict:
    """What makes a finished cell reusable: everything but the grid, where it runs and output places; the
    --prior flags only where they differ from their defaults (`prior_setting`: plain cells keep the
    config they were saved with, and no cell is reused for other prior settings)."""
    skip = ("datasets", "seeds", "backend", "address", "jobs", "device", "data_dir", "out_dir", "runs_dir")
    config = {k: v for k, v in asdict(args).items() if k not in skip and k not in PRIOR_KNOBS}
    return {**config, **prior_setting(args), "resolved": preset_record(resolve_preset(args))}


def cell_key(dataset: str, seed: int) -> str:
    return f"{dataset}:{seed}"


def main(args: Args) -> Path:
    set_threads(args.threads or 1)
    resolve_device(args.device)  # fail early on a bad --device
    plain = plain_preset(args)
    problems = args.execution_problems()
    problems += precision_problems(args.precision)
    problems += check_args(args)  # ranges: bad values were raw tracebacks from training (issue 19)
    problems += [
        f"--fixed must name orderings from {FIXED_ORDERINGS}, got {f!r}" for f in args.fixed if f not in FIXED_ORDERINGS
    ]
    if any(p not in PEER_CHOICES for p in args.peers) or len(set(args.peers)) != len(args.peers):
        problems.append(f"--peers must be distinct names from {PEER_CHOICES} (or none), got {args.peers}")
    problems += check_prior_flags(args, plain)
    if problems:
        raise SystemExit("; ".join(problems))
    out_dir = Path(args.out_dir)
    path = out_dir / "strength.json"
    results = _load(path)
    todo = [
        (d, s)
        for d in args.datasets
        for s in args.seeds
        if results["cells"].get(cell_key(d, s), {}).get("config") != cell_config(args)
    ]
    command = command_line(args, SCRIPT, skip=())
    print(
        f"strength: {len(todo)} cells to run ({len(args.datasets) * len(args.seeds) - len(todo)} reused), preset {args.preset}"
    )

    def finish(key: str, cell: dict) -> None:
        results["cells"][key] = {k: v for k, v in cell.items() if k != "rows"}
        results["rows"] = [r for r in results["rows"] if (r["dataset"], r["seed"]) != (cell["dataset"], cell["seed"])]
        results["rows"] += cell["rows"]
        results["command"] = command
        save_results(path, ResultsFile.from_payload(results, "strength"))
        atomic_write_text(out_dir / "strength.md", render_markdown(results))
        print(f"  {key} done in {cell['cell_wall_time_s']:.0f} s", flush=True)

    cells = [Cell(cell_key(d, s), compute_cell, {"args": args, "dataset": d, "seed": s}) for d, s in todo]
    failed = args.run_grid(
        cells,
        finish,
        metric=RANK_METRIC,
        done_before=len(args.datasets) * len(args.seeds) - len(todo),
        progress=False,  # compute_cell reports no validation steps; each finished cell prints a line
    )
    if failed:
        print(f"strength: {len(failed)} cells failed ({', '.join(failed)}); rerun the same command to retry them")
    if not todo:
        atomic_write_text(out_dir / "strength.md", render_markdown(results))
    print((out_dir / "strength.md").read_text())
    return path


def _load(path: Path) -> dict:
    """strength.json (any format: experiments/grid/results_file.py) as the flat dict the grid updates."""
    try:
        results = load_results(path, "strength", missing_ok=True).payload()
    except ResultsFileError as error:
        raise SystemExit(
            f"{path}: not a strength results file ({error.reason}); move it away to start afresh"
        ) from None
    results.setdefault("cells", {})
    return results


if __name__ == "__main__":
    run_script(lambda: main(parse_args(Args)))

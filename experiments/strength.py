"""The strength table: the chain learners at a larger size against tuned peers and a floor.

    python experiments/strength.py --jobs 4 --device auto                  # paper preset, full table
    python experiments/strength.py --backend ray --address auto            # each cell one Ray Tune trial
    python experiments/strength.py --datasets emotions --seeds 0 --preset small   # a quick check

For every dataset x seed (a cell) it trains, with one preset (experiments/run/presets.py) and the same
validation split (train minus a seeded 10% slice):
  * the fixed orderings (best one chosen on validation nDCG@5; when that split holds fewer than
    --min-val-docs documents the choice is the mean over --folds folds, agents.selection), target
    rearrangement, and the combined objective started from rearrangement's ranking checkpoint;
    every chain learner keeps two checkpoints: best validation example F1 (its label sets) and best
    validation nDCG@5 (its ranking scores);
  * ensembles fused on validation (agents.ensemble): chains only (rearrange + combined, with their
    auxiliary heads' scores as extra members) and chains + peers;
  * the peers tuned on the same split (agents.peers) and the label-frequency floor.
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
import torch

from labelchain.agents.config import DEFAULTS as D, Config
from labelchain.agents.decoding import predict
from labelchain.agents.ensemble import Ensemble
from labelchain.agents.learners import FIXED_ORDERINGS
from labelchain.agents.peers import PeerUnavailable, tune_peer
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.precision import check_precision, resolve_precision
from labelchain.agents.selection import kfold_indices, needs_folds, pick_best
from labelchain.agents.supervised import carve_validation
from labelchain.agents.training import train_epochs
from labelchain.envs.data.dataset import Dataset, Split
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
from labelchain.experiments.run.config import check_args, override, precision_problems
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.grid.execution import ExecutionFlags, runs_dir_flag
from labelchain.experiments.grid.predictions import cell_predictions_dir, save_row_predictions
from labelchain.experiments.grid.results_file import ResultsFile, ResultsFileError, load_results, save_results
from labelchain.experiments.run.presets import PRESETS, preset_record
from labelchain.experiments.reports.strength import render_markdown
from labelchain.experiments.run.threads import set_threads

SCRIPT = "experiments/strength.py"
GRID = "strength"  # rows' test predictions: <out_dir>/predictions/strength/<dataset>/seed<seed>/<method>.npz
RANK_METRIC, SET_METRIC = "nDCG@5", "example_f1"
Output = tuple[Any, np.ndarray]


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
    peers: list[str] = field(default_factory=lambda: ["ovr_logistic", "omikuji"])
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


def resolve_preset(args: Args) -> Config:
    if args.preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {sorted(PRESETS)}, got {args.preset!r}")
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "combined_epochs", "hidden_size")
        if getattr(args, key) is not None
    }
    return PRESETS[args.preset].changed(**overrides)


# ----------------------------------------------------------------------------- one chain learner
@dataclass
class ChainFit:
    """A trained chain learner: (set from the F1 checkpoint, scores from the nDCG@5 checkpoint)."""

    val: Output
    test: Output | None
    aux_val: np.ndarray | None
    aux_test: np.ndarray | None
    val_metrics: dict
    wall_time_s: float
    best_epochs: dict
    rank_state: dict


def fit_chain(
    learner: str,
    train: Split,
    val: Split,
    test: Split | None,
    preset: Config,
    seed: int,
    device: torch.device,
    warm_state: dict | None = None,
    precision: str = "fp32",
) -> ChainFit:
    started = time.perf_counter()
    torch.manual_seed(seed)
    policy = build_policy(preset.policy, train).to(device)
    if warm_state is not None:
        policy.load_state_dict(warm_state)
    rl = learner == "combined"
    config = preset.changed(
        epochs=preset.run.combined_epochs if rl else preset.run.epochs,
        seed=seed,
        # +1: the committed grid ran when this loop stopped after patience + 1 epochs without improvement;
        # the one rule (agents.training.out_of_patience) stops after patience, so this keeps its cells.
        patience=None if preset.run.patience is None else preset.run.patience + 1,
        select_metric=RANK_METRIC,
        extra_checkpoints=(SET_METRIC,),
        precision=precision,
    )
    history = train_epochs(policy, train, config, learner=learner, label_freq=train.label_freq, val=val, progress=False)
    rank_state, set_state = history.checkpoints[RANK_METRIC][2], history.checkpoints[SET_METRIC][2]
    outputs: dict[str, Any] = {}
    for part, split in (("val", val), ("test", test)):
        if split is None:
            continue
        policy.load_state_dict(set_state)
        sets, _ = predict(policy, split.X, precision=precision)
        policy.load_state_dict(rank_state)
        _, scores = predict(policy, split.X, precision=precision)
        outputs[part] = (sets, scores)
        if policy.label_head is not None:
            with torch.no_grad():
                outputs[f"aux_{part}"] = torch.sigmoid(policy.aux_logits(split.X)).cpu().numpy()
    val_metrics = evaluate(val.Y, scores=outputs["val"][1], Y_pred=outputs["val"][0])
    best_epochs = {metric: kept[0] for metric, kept in history.checkpoints.items()}
    return ChainFit(
        outputs["val"],
        outputs.get("test"),
        outputs.get("aux_val"),
        outputs.get("aux_test"),
        val_metrics,
        time.perf_counter() - started,
        best_epochs,
        rank_state,
    )


def choose_fixed(
    args: Args, train: Split, val: Split, fits: dict[str, ChainFit], preset: Config, seed: int, device: torch.device
) -> tuple[str, dict]:
    """The best fixed ordering on validation nDCG@5; k-fold means when the split is small."""
    if not needs_folds(len(train) + len(val), args.val_fraction, args.min_val_docs):
        best, means = pick_best({name: [fits[name].val_metrics[RANK_METRIC]] for name in args.fixed}, RANK_METRIC)
        return best, {"rule": "one validation split", "val": means}
    full = Split(_vstack(train.X, val.X), _vstack(train.Y, val.Y))
    scores: dict[str, list[float]] = {name: [] for name in args.fixed}
    precision = resolve_precision(check_precision(args.precision), device.type)
    for fold_train, fold_val in kfold_indices(len(full), args.folds, seed):
        for name in args.fixed:
            fit = fit_chain(
                name, full.subset(fold_train), full.subset(fold_val), None, preset, seed, device, precision=precision
            )
            scores[name].append(fit.val_metrics[RANK_METRIC])
    best, means = pick_best(scores, RANK_METRIC)
    return best, {
        "rule": f"{args.folds}-fold mean (validation split < {args.min_val_docs} docs)",
        "val": means,
        "folds": scores,
    }


def _vstack(a, b):
    import scipy.sparse as sp

    return sp.vstack([a, b], format="csr") if sp.issparse(a) else np.vstack([a, b])


# ----------------------------------------------------------------------------- one cell
def _row(
    dataset: str, seed: int, method: str, kind: str, test_Y, output: Output, label_freq, wall: float, config: dict
) -> dict:
    metrics = evaluate(test_Y, scores=output[1], Y_pred=output[0], label_freq=label_freq)
    return {
        "dataset": dataset,
        "seed": seed,
        "method": method,
        "kind": kind,
        "metrics": metrics,
        "wall_time_s": wall,
        "config": config,
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
    for name in [*args.fixed, "rearrange"]:
        fits[name] = fit_chain(name, train, val, test, preset, seed, device, precision=precision)
    fits["combined"] = fit_chain(
        "combined", train, val, test, preset, seed, device, warm_state=fits["rearrange"].rank_state, precision=precision
    )
    for name, fit in fits.items():
        assert fit.test is not None and (fit.aux_val is None) == (fit.aux_test is None)
        config = {
            "preset": preset_record(preset),
            "best_epochs": fit.best_epochs,
            "checkpoints": [SET_METRIC, RANK_METRIC],
        }
        kind = "fixed" if name in FIXED_ORDERINGS else "dynamic"
        rows.append(_row(dataset, seed, name, kind, test.Y, fit.test, ds.label_freq, fit.wall_time_s, config))
        save(name, fit.test)
    best, selection = choose_fixed(args, train, val, fits, preset, seed, device)
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
        rows.append(_row(dataset, seed, method, "ensemble", test.Y, output, ds.label_freq, wall, config))
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
    """What makes a finished cell reusable: everything but the grid, where it runs and output places."""
    skip = ("datasets", "seeds", "backend", "address", "jobs", "device", "data_dir", "out_dir", "runs_dir")
    return {**{k: v for k, v in asdict(args).items() if k not in skip}, "resolved": preset_record(resolve_preset(args))}


def cell_key(dataset: str, seed: int) -> str:
    return f"{dataset}:{seed}"


def main(args: Args) -> Path:
    set_threads(args.threads or 1)
    resolve_device(args.device)  # fail early on a bad --device
    resolve_preset(args)
    problems = args.execution_problems()
    problems += precision_problems(args.precision)
    problems += check_args(args)  # ranges: bad values were raw tracebacks from training (issue 19)
    problems += [
        f"--fixed must name orderings from {FIXED_ORDERINGS}, got {f!r}" for f in args.fixed if f not in FIXED_ORDERINGS
    ]
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

"""What the variant tables share (compare_trees: output layers; compare_guidance: cluster guidance).

One grid cell = (dataset, seed): validation = ``--val-fraction`` of train (seeded); for each variant
of the chain, target rearrangement from scratch for ``--rearrange-epochs`` epochs, then the combined
objective (RL + rearrangement, ``--rl-lr``) started from it for ``--combined-epochs``; each keeps its
best epoch on validation ``--select-metric``; then the rearrange+combined ensemble fitted on
validation (agents.ensemble). Rows as in orderings.json (dataset, seed, method, kind, metrics, val,
config, wall_time_s), the variant in the method's name after a ``+`` (``rearrange+tree``,
``combined+bcl``); wall_time_s is training time (an ensemble: its members' sum).

Results merge into ``{out-dir}/<grid>.json`` under a lock after each cell and ``.md`` is rebuilt, so a
stopped grid keeps its finished cells; a (dataset, seed, variant) already in the file is skipped.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from labelchain.agents.decoding import predict
from labelchain.agents.config import DEFAULTS as D, Config
from labelchain.agents.learner_base import RL_LR
from labelchain.agents.ensemble import Ensemble
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.precision import check_precision, resolve_precision
from labelchain.agents.supervised import carve_validation
from labelchain.agents.training import train_epochs
from labelchain.envs.data.dataset import Split
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.data.pu import hide_labels
from labelchain.envs.metrics import evaluate
from labelchain.envs.tail_metrics import few_shot_f1
from labelchain.experiments.grid import execution
from labelchain.experiments.grid.results_file import ResultsFile, load_results, merge_rows_locked
from labelchain.experiments.run.common import REPO_ROOT, atomic_write_text
from labelchain.experiments.grid.predictions import cell_predictions_dir, save_row_predictions
from labelchain.experiments.run.config import override
from labelchain.experiments.grid.cells import Cell as GridCell

LEARNER_NAMES = ("rearrange", "combined", "ensemble")
# XLGen's few-shot buckets (0, 1, <=5, <=10 training documents) and wider ones: on bibtex and delicious
# no label has fewer than 10 training documents, so only these show their tail by frequency.
FREQUENCY_BUCKETS = (0, 1, 5, 10, 20, 50, 100)


@dataclass
class GridArgs(execution.ExecutionFlags):
    """The training budget and selection every variant of a grid shares.

    The variant grids' flags (a command line, so a class of its own): the knobs they share with
    train_rl take its flag's name, help, range and default (`override`, from TrainKnobs and so from
    `agents.config.DEFAULTS`); a cell trains from `Config.of(...)` of them (`Cell.fit`)."""

    datasets: list[str] = field(default_factory=lambda: ["bibtex", "corel5k", "delicious"])
    # ranges for check_args (a grid's main checks them: bad values were raw tracebacks, issue 19)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"at_least": 0, "at_most": 2**32 - 1})
    rearrange_epochs: int = field(default=3, metadata={"at_least": 0})
    combined_epochs: int = field(default=1, metadata={"at_least": 0})
    hidden_size: int = override("hidden_size", D.policy.hidden_size)
    batch_size: int = override("batch_size", D.learner.batch_size)
    lr: float = override("lr", D.learner.lr)
    rl_lr: float = field(  # not None: combined rows take their own rate
        default=RL_LR, metadata={"help": "learning rate of the combined learner", "above": 0}
    )
    select_metric: str = override("select_metric", D.run.select_metric)
    val_fraction: float = override("val_fraction", D.run.val_fraction)
    data_dir: str | None = override("data_dir", None)
    precision: str = override("precision", "fp32")
    out_dir: str | None = field(
        default="experiments/results",
        metadata={"help": "results folder (the grid's .json and .md; relative = to the checkout); none = print only"},
    )


def results_stem(args: GridArgs, name: str) -> Path | None:
    """Where grid `name` keeps its results: <--out-dir>/<name> (.json, .md), None with --out-dir none."""
    return None if args.out_dir is None else REPO_ROOT / args.out_dir / name


def variant_of(method: str) -> str:
    """A row's variant: what follows the learner in its method name ("combined+mcg+lambda2" -> "mcg+lambda2")."""
    return method.partition("+")[2]


class Cell:
    """One (dataset, seed): the splits, and training / scoring of one policy at a time.

    `hide_fraction` > 0 is the positive-unlabelled setting: that share of each training document's
    labels is hidden (seeded, envs.data.pu) before validation is carved, test keeps all labels.
    """

    def __init__(
        self, name: str, seed: int, args: GridArgs, hide_fraction: float = 0.0, results: str | None = None
    ) -> None:
        self.name, self.seed, self.args = name, seed, args
        # with `results` (the grid's {out} path): test rows' predictions go to experiments.grid.predictions' folder
        self.predictions_dir = None if results is None else predictions_folder(results, name, seed)
        self.data = load_dataset(name, args.data_dir)
        full = self.data.train
        if hide_fraction > 0:
            full = Split(full.X, hide_labels(full.Y, hide_fraction, seed))
        self.full_train = full
        self.train, self.val = carve_validation(full, args.val_fraction, seed)

    def fit(self, policy: ChainPolicy, learner: str, epochs: int, lr: float, train: Split | None = None) -> float:
        """Train in place (best epoch on validation kept); returns the training wall time."""
        config = Config.of(
            epochs=epochs,
            batch_size=self.args.batch_size,
            lr=lr,
            rl_lr=None,  # `lr` is this learner's own rate (the caller picks --lr or --rl-lr)
            ppo_lr=None,
            seed=self.seed,
            select_metric=self.args.select_metric,
            patience=epochs,
            precision=resolve_precision(check_precision(self.args.precision), policy.input_weight.device.type),
        )
        started = time.perf_counter()
        train_epochs(
            policy,
            self.train if train is None else train,
            config,
            learner=learner,
            val=self.val,
            progress=False,
            label_freq=self.full_train.label_freq,
        )
        return time.perf_counter() - started

    def outputs(self, policy: ChainPolicy) -> dict[str, tuple]:
        precision = resolve_precision(check_precision(self.args.precision), policy.input_weight.device.type)
        return {
            "val": predict(policy, self.val.X, precision=precision),
            "test": predict(policy, self.data.test.X, precision=precision),
        }

    def score(self, split: str, output: tuple, method: str | None = None) -> dict[str, float]:
        """Every metric of evaluate(), PSP@k from the training counts, and F1 per frequency bucket;
        a test row's predictions are saved under `method` (when the grid keeps them)."""
        Y = self.val.Y if split == "val" else self.data.test.Y
        Y_pred, scores = output
        freq, n_train = self.full_train.label_freq, self.full_train.X.shape[0]
        metrics = evaluate(Y, scores=scores, Y_pred=Y_pred, label_freq=freq, n_train=n_train)
        if split == "test" and method is not None:
            folder = self.predictions_dir
            save_row_predictions(
                folder, method, Y, output, dataset=self.data, seed=self.seed, label_freq=freq, n_train=n_train
            )
        return {**metrics, **few_shot_f1(Y, Y_pred, freq, FREQUENCY_BUCKETS)}

    def row(self, method: str, kind: str, metrics: dict, val: dict, seconds: float, config: dict) -> dict:
        args = self.args
        budget = {
            "hidden_size": args.hidden_size,
            "rearrange_epochs": args.rearrange_epochs,
            "combined_epochs": args.combined_epochs,
            "lr": args.lr,
            "rl_lr": args.rl_lr,
            "batch_size": args.batch_size,
            "select_metric": args.select_metric,
        }
        return {
            "dataset": self.name,
            "seed": self.seed,
            "method": method,
            "kind": kind,
            "metrics": metrics,
            "val": val,
            "config": {**budget, **config},
            "wall_time_s": seconds,
        }


@dataclass
class Member:
    """A trained policy with its outputs on validation and test, and what training it cost."""

    policy: ChainPolicy
    val: dict[str, float]
    outputs: dict[str, tuple]
    seconds: float


def trained(
    cell: Cell, policy: ChainPolicy, learner: str, epochs: int, lr: float, train: Split | None = None
) -> Member:
    seconds = cell.fit(policy, learner, epochs, lr, train)
    outputs = cell.outputs(policy)
    return Member(policy, cell.score("val", outputs["val"]), outputs, seconds)


def learner_rows(cell: Cell, suffix: str, rearranged: Member, config: dict, train: Split | None = None) -> list[dict]:
    """Rows of rearrange (given), combined (trained from it on `train`) and their ensemble."""
    args = cell.args
    members = {"rearrange": rearranged}
    if args.combined_epochs > 0:
        combined = copy.deepcopy(rearranged.policy)
        members["combined"] = trained(cell, combined, "combined", args.combined_epochs, args.rl_lr, train)
    rows = [
        cell.row(
            name + suffix, "dynamic", cell.score("test", m.outputs["test"], name + suffix), m.val, m.seconds, config
        )
        for name, m in members.items()
    ]
    if len(members) < 2:
        return rows
    val_outputs = [m.outputs["val"] for m in members.values()]
    ensemble = Ensemble().fit(val_outputs, cell.val.Y, ranking_metric=args.select_metric)
    fused = ensemble.predict([m.outputs["test"] for m in members.values()])
    seconds = sum(m.seconds for m in members.values())
    extra = {**config, "fusion": ensemble.fusion, "set_rule": ensemble.set_rule}
    val = cell.score("val", ensemble.predict(val_outputs))
    test = cell.score("test", fused, "ensemble" + suffix)
    rows.append(cell.row("ensemble" + suffix, "ensemble", test, val, seconds, extra))
    return rows


def predictions_folder(results: str | Path, dataset: str, seed: int) -> Path:
    """Where a cell of the grid whose results file is `results` ({out}, e.g. experiments/results/trees)
    keeps its test rows' predictions: <out's folder>/predictions/<out's name>/<dataset>/seed<seed>/."""
    return cell_predictions_dir(Path(results).parent, Path(results).stem, dataset, seed)


def seeded(seed: int) -> None:
    """Every policy of a cell starts from the same torch seed (variants differ only by what they add)."""
    torch.manual_seed(seed)


def merge_into(
    out: Path, payload: dict, rows: list[dict], render: Callable[[dict], str], merged_keys: tuple[str, ...] = ()
) -> dict:
    """Add `rows` to the results file under a lock (several processes may share it), then rewrite it.

    Rows of other runs are kept whatever their budget (each row's config says it); a row run again
    replaces its namesake. `merged_keys` name dict entries of the payload (e.g. chosen tree shapes)
    merged with the file's, this payload's values winning."""

    def sections(previous: ResultsFile, fresh: ResultsFile) -> dict:
        merged = {k: {**previous.sections.get(k, {}), **fresh.sections.get(k, {})} for k in merged_keys}
        commands = set(previous.sections.get("commands", [])) | set(fresh.sections.get("commands", [fresh.command]))
        return {**fresh.sections, **merged, "commands": sorted(commands)}

    fresh = ResultsFile.from_payload({**payload, "rows": rows}, out.stem)
    written = merge_rows_locked(
        out.with_suffix(".json"),
        fresh,
        key=lambda r: (r["dataset"], r["seed"], r["method"]),
        merge_sections=sections,
        then=lambda merged: atomic_write_text(out.with_suffix(".md"), render(merged.payload())),
    )
    return written.payload()


def load_payload(out: Path) -> dict:
    """The variant grid's results file `{out}.json` (any format) as the flat payload renderers read."""
    return load_results(out.with_suffix(".json"), out.stem).payload()


def done_variants(out: Path | None) -> set[tuple[str, int, str]]:
    """(dataset, seed, variant) already in the results file."""
    if out is None or not out.with_suffix(".json").exists():
        return set()
    rows = load_results(out.with_suffix(".json"), out.stem).rows
    return {(r["dataset"], r["seed"], variant_of(r["method"])) for r in rows}


def run_cells(args: GridArgs, cells: list[GridCell], record: Callable[[str, dict], None]) -> list[str]:
    """The grid's cells through experiments/grid/execution.py with its flags; returns the failed cells' keys."""
    return args.run_grid(
        cells,
        record,
        metric=args.select_metric,
        progress=False,  # each finished cell prints a line
    )


def seed_pairs(rows: list[dict], dataset: str, base: str, method: str) -> list[tuple[dict, dict]]:
    """(row of `base`, row of `method`) of `dataset` for each seed that has both, seeds ascending."""
    by_key = {(r["seed"], r["method"]): r for r in rows if r["dataset"] == dataset}
    seeds = sorted(s for s, m in by_key if m == method and (s, base) in by_key)
    return [(by_key[(s, base)], by_key[(s, method)]) for s in seeds]


def mean_difference(pairs: list[tuple[dict, dict]], metric: str) -> float:
    """Mean over seeds of `metric`, variant minus base, over the finite differences; NaN when none is
    (an empty few-shot bucket on every seed)."""
    finite = [v for b, m in pairs if not math.isnan(v := m["metrics"][metric] - b["metrics"][metric])]
    return sum(finite) / len(finite) if finite else math.nan

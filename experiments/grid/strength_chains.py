"""The strength grid's chain learners: one learner trained with two checkpoints, the k-fold choice of
the best fixed ordering, and the --prior flags (issue 16: every chain of a cell trains on a peer's prior).

Kept apart from experiments/strength.py, which schedules the cells and writes the results file. The
prior reaches the chains the way it reaches train_rl's: `experiments.run.setup.attach_prior` appends
the cached out-of-fold prior columns and drops training labels outside the shortlist, and a prior
chain's label sets and scores come from the ranking and set rules chosen on validation
(`experiments.run.report.rules_chosen_on`), not from the emission order.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.config import Config
from labelchain.agents.decoding import predict
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.precision import check_precision, resolve_precision
from labelchain.agents.prior_columns import shortlist_in_columns
from labelchain.agents.selection import kfold_indices, needs_folds, pick_best
from labelchain.agents.training import train_epochs
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments.run.config import PRIOR_KNOBS, knob, prior_problems
from labelchain.experiments.run.report import rules_chosen_on
from labelchain.experiments.run.setup import attach_prior, drop_outside_shortlist, shortlist_problem


class Args(Protocol):
    """The strength grid's flags this module reads (experiments/strength.Args has them; a Protocol keeps
    this room from importing the script above it)."""

    datasets: list[str]
    preset: str
    fixed: list[str]
    val_fraction: float
    min_val_docs: int
    folds: int
    data_dir: str | None
    precision: str
    prior: str
    prior_scale: str
    shortlist: int
    label_history: bool


RANK_METRIC, SET_METRIC = "nDCG@5", "example_f1"
Output = tuple[Any, np.ndarray]


# ----------------------------------------------------------------------------- the prior flags
def prior_setting(args: Args) -> dict[str, Any]:
    """The prior flags that differ from their defaults (empty: the plain chains). A cell's config and
    its chain rows record this, so cells with other prior settings are never reused for each other
    while cells of the plain grid (made before the flags existed) still are."""
    defaults = {name: knob(name).default for name in PRIOR_KNOBS}  # the flags' one set of defaults
    if args.prior == "none":  # --prior-scale means nothing without a prior
        defaults.pop("prior_scale")
    return {name: getattr(args, name) for name in defaults if getattr(args, name) != defaults[name]}


def with_prior_policy(preset: Config, args: Args) -> Config:
    """The preset with the chain's prior mode, shortlist and label history from the flags."""
    return preset.changed(
        prior="none" if args.prior == "none" else args.prior_scale,
        shortlist=bool(args.shortlist),
        label_history=args.label_history,
    )


def check_prior_flags(args: Args, preset: Config) -> list[str]:
    """One line per bad --prior flag, before any training: the checks train_rl makes (`prior_problems`),
    a preset the prior cannot ride on, and a --shortlist above some dataset's label count."""
    problems = prior_problems(args)
    if args.prior != "none" and preset.policy.output != "flat":
        problems.append(f"--prior needs a flat output layer; preset {args.preset} has {preset.policy.output}")
    if args.shortlist and not problems:
        for name in args.datasets:
            problem = shortlist_problem(args.shortlist, load_dataset(name, args.data_dir).n_labels, name)
            problems += [problem] if problem else []
    return problems


@dataclass
class ChainSplits:
    """What a cell's chains train and are scored on (prior columns appended under --prior; training
    labels outside the shortlist dropped) and `pool`, the train + validation documents the k-fold
    choice re-splits (prior columns, every gold label)."""

    train: Split
    val: Split
    test: Split
    pool: Split


def chain_splits(args: Args, ds: Dataset, source: Split, train: Split, val: Split, seed: int) -> ChainSplits:
    """The cell's chain data: `train`, `val` (carved from `source`, the training documents used) and the
    test split, with the --prior peer's columns when one is given (`attach_prior`; the prior is built
    on `source`, so --max-train-docs cells get their own cached prior)."""
    if args.prior == "none":
        return ChainSplits(train, val, ds.test, Split(_vstack(train.X, val.X), _vstack(train.Y, val.Y)))
    used = ds if source is ds.train else dataclasses.replace(ds, train=source)
    p_train, p_val, p_test, _ = attach_prior(
        args.prior, args.shortlist, used, train, val, seed=seed, val_fraction=args.val_fraction, name=ds.name
    )
    return ChainSplits(p_train, p_val, p_test, Split(_vstack(p_train.X, p_val.X), _vstack(train.Y, val.Y)))


def trainable(split: Split, preset: Config) -> Split:
    """`split` as a chain trains on it: under a shortlist, gold labels outside each document's
    shortlist dropped (read from its prior columns, the same selection `attach_prior` drops by)."""
    if not preset.policy.shortlist:
        return split
    n_labels = int(split.Y.shape[1])
    return drop_outside_shortlist(split, shortlist_in_columns(split.X, int(split.X.shape[1]) - n_labels, n_labels))


# ----------------------------------------------------------------------------- one chain learner
@dataclass
class ChainFit:
    """A trained chain learner: its (label sets, scores) on validation and test. Plain chains: sets from
    the best-example-F1 checkpoint, scores from the best-nDCG@5 one; prior chains: both from the
    nDCG@5 checkpoint under the rules chosen on validation (`rules`), as train_rl's report."""

    val: Output
    test: Output | None
    aux_val: np.ndarray | None
    aux_test: np.ndarray | None
    val_metrics: dict
    wall_time_s: float
    best_epochs: dict
    rank_state: dict
    rules: dict | None = None


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
    rules = None
    if policy.prior_mode != "none":
        policy.load_state_dict(rank_state)
        others = [] if test is None else [test.X]
        rules, outputs["val"], rest = rules_chosen_on(policy, val, others, max_steps=None, seed=seed)
        outputs.update({"test": rest[0]} if rest else {})
    for part, split in (("val", val), ("test", test)):
        if split is None:
            continue
        if rules is None:
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
        rules,
    )


def choose_fixed(
    args: Args,
    splits: ChainSplits,
    n_docs: int,
    fits: dict[str, ChainFit],
    preset: Config,
    seed: int,
    device: torch.device,
) -> tuple[str, dict]:
    """The best fixed ordering on validation nDCG@5; k-fold means over `splits.pool` when the cell's
    `n_docs` training documents leave a small validation split."""
    if not needs_folds(n_docs, args.val_fraction, args.min_val_docs):
        best, means = pick_best({name: [fits[name].val_metrics[RANK_METRIC]] for name in args.fixed}, RANK_METRIC)
        return best, {"rule": "one validation split", "val": means}
    full = splits.pool
    scores: dict[str, list[float]] = {name: [] for name in args.fixed}
    precision = resolve_precision(check_precision(args.precision), device.type)
    for fold_train, fold_val in kfold_indices(len(full), args.folds, seed):
        for name in args.fixed:
            fit = fit_chain(
                name,
                trainable(full.subset(fold_train), preset),
                full.subset(fold_val),
                None,
                preset,
                seed,
                device,
                precision=precision,
            )
            scores[name].append(fit.val_metrics[RANK_METRIC])
    best, means = pick_best(scores, RANK_METRIC)
    return best, {
        "rule": f"{args.folds}-fold mean (validation split < {args.min_val_docs} docs)",
        "val": means,
        "folds": scores,
    }


def _vstack(a, b):
    return sp.vstack([a, b], format="csr") if sp.issparse(a) else np.vstack([a, b])

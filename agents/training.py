"""Epoch-based training of one learner with early stopping: the short path for library users.

Every optimisation step is a `Learner.update` (agents.learners), the very steps that
experiments/train_rl.py drives with its checkpoints and TensorBoard curves; this loop only adds
epochs over shuffled minibatches, a greedy validation pass per epoch, early stopping on a metric of
`envs.metrics.evaluate`, and restoring the best weights. MCG chains: see agents.mcg (`mcg_setup`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from labelchain.agents.decoding import predict
from labelchain.agents.config import Config
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import LEARNERS, make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.dataset import Split
from labelchain.envs.metrics import RANKING_NAMES, SET_NAMES, evaluate, is_better
from labelchain.envs.progress import progress_bar


@dataclass
class TrainHistory:
    """One dict per epoch (loss, validation metrics, docs/s) plus where the best epoch was."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("nan")
    config: dict = field(default_factory=dict)
    # select_metric and every extra checkpoint metric -> (epoch, validation metrics, weights) of its best epoch
    checkpoints: dict[str, tuple[int, dict, dict]] = field(default_factory=dict)


def epoch_learner_config(config: Config, learner: str) -> LearnerConfig:
    """What `learner` trains with in this loop: `config`'s learner section at its rate (the one rule,
    `Config.learner_config`), without the greedy return charts (nothing here draws them)."""
    return replace(config.learner_config(learner), greedy_charts=False)


def out_of_patience(without_improvement: int, patience: int | None) -> bool:
    """The one early-stopping rule (this loop and train_rl's `LearnerRun`): stop once `patience`
    validations in a row improved no tracked checkpoint; None = never stop early."""
    return patience is not None and without_improvement >= patience


def _check(config: Config, learner: str) -> None:
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    for metric in (config.run.select_metric, *config.run.extra_checkpoints):
        if metric not in RANKING_NAMES + SET_NAMES:
            raise ValueError(
                f"select_metric / extra_checkpoints must be in {RANKING_NAMES + SET_NAMES}, got {metric!r}"
            )
    if config.learner.batch_size < 1 or config.run.epochs < 0:
        raise ValueError(f"need batch_size >= 1 and epochs >= 0, got {config.learner.batch_size}, {config.run.epochs}")


def validation_metrics(
    policy: ChainPolicy, val: Split, batch_size: int, max_steps: int | None, precision: str = "fp32"
) -> dict[str, float]:
    """Greedy decode of the validation split, scored by envs.metrics.evaluate (label columns only:
    an MCG split carved from an augmented training split has its cluster columns dropped)."""
    Y_pred, scores = predict(policy, val.X, batch_size=batch_size, max_steps=max_steps, precision=precision)
    gold = val.Y if policy.mcg is None else policy.mcg.strip(val.Y)
    return evaluate(gold, scores=scores, Y_pred=Y_pred)


def train_epochs(
    policy: ChainPolicy,
    train: Split,
    config: Config,
    *,
    learner: str = "freq2rare",
    label_freq: np.ndarray | None = None,
    val: Split | None = None,
    progress: bool = True,
    log_fn: Callable[[int, dict], None] | None = None,
) -> TrainHistory:
    """Train `policy` in place with `learner` (any of agents.learners.LEARNERS) and return its history.

    `config` (agents.config, e.g. `Config.of(epochs=8, seed=0)`): its learner section at `learner`'s
    rate (`Config.learner_config`) drives the updates; its run section the epochs (`epochs`), validation
    (`val_fraction`, `select_metric`, `extra_checkpoints`, `val_batch_size`) and stopping (`patience`:
    validations in a row without improvement, `out_of_patience`; `max_seconds`); the policy section is
    not read (the policy is built).
    Warm start = pass a loaded policy. Without `val`, `val_fraction` of `train` is held out
    (0 = no validation, no early stopping). label_freq defaults to the training split's label counts.
    log_fn(epoch, record) receives each epoch's record (e.g. to write TensorBoard scalars).
    """
    _check(config, learner)
    run, seed = config.run, config.learner.seed
    if val is None and run.val_fraction > 0:
        train, val = carve_validation(train, run.val_fraction, seed)
    learner_config = epoch_learner_config(config, learner)
    trainer = make_learner(learner, policy, train, learner_config, label_freq=label_freq)
    tracked = dict.fromkeys((run.select_metric, *run.extra_checkpoints))
    rng = np.random.default_rng(seed)
    history = TrainHistory(config={"learner": learner, **config.to_dict()})
    best_state, bad_epochs, started = None, 0, time.perf_counter()
    n_docs = len(train)
    batch_size, precision = learner_config.batch_size, learner_config.precision
    bar = progress_bar(progress, total=run.epochs * n_docs, unit="doc", desc=f"train[{learner}]")
    for epoch in range(run.epochs):
        epoch_start, losses = time.perf_counter(), []
        order = rng.permutation(n_docs)
        for begin in range(0, n_docs, batch_size):
            rows = np.sort(order[begin : begin + batch_size])
            scalars = trainer.update(rows)
            losses.append(scalars.get("losses/total", scalars.get("losses/teacher_forcing", np.nan)))
            bar.update(len(rows))
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "docs_per_sec": n_docs / max(seconds, 1e-9)}
        if val is not None:
            metrics = validation_metrics(policy, val, run.val_batch_size, trainer.task.max_steps, precision)
            record.update({f"val/{k}": v for k, v in metrics.items()})
            improved = False
            for metric in tracked:  # early stopping waits while any tracked metric still improves
                kept = history.checkpoints.get(metric)
                if is_better(metric, metrics[metric], None if kept is None else kept[1][metric]):
                    history.checkpoints[metric] = (epoch, metrics, copy.deepcopy(policy.state_dict()))
                    improved = True
            best_epoch, best_metrics, best_state = history.checkpoints[run.select_metric]
            history.best_epoch, history.best_score = best_epoch, best_metrics[run.select_metric]
            bad_epochs = 0 if improved else bad_epochs + 1
        history.epochs.append(record)
        bar.set_postfix(
            loss=f"{record['loss']:.3f}", **({"val": f"{history.best_score:.3f}"} if val is not None else {})
        )
        if log_fn is not None:
            log_fn(epoch, record)
        out_of_time = run.max_seconds is not None and time.perf_counter() - started > run.max_seconds
        if (val is not None and out_of_patience(bad_epochs, run.patience)) or out_of_time:
            break
    bar.close()
    if best_state is not None:
        policy.load_state_dict(best_state)
    policy.eval()
    return history

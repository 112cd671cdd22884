"""Epoch-based training of one learner with early stopping: the short path for library users.

Every optimisation step is a `Learner.update` (agents.learners), the very steps that
experiments/train_rl.py drives with its checkpoints and TensorBoard curves; this loop only adds
epochs over shuffled minibatches, a greedy validation pass per epoch, early stopping on a metric of
`envs.metrics.evaluate`, and restoring the best weights.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from agents.decoding import predict
from agents.learners import LEARNERS, LearnerConfig, make_learner
from agents.policy import ChainPolicy
from agents.supervised import carve_validation
from envs.data.dataset import Split
from envs.metrics import RANKING_NAMES, SET_NAMES, evaluate, is_better

@dataclass
class TrainConfig:
    """Epochs, early stopping and the learner's own knobs; `max_steps` None = the envs' default cap."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 5
    max_steps: int | None = None
    greedy_rearrangement: bool = False
    temperature: float = 1.0
    grad_clip: float | None = 1.0
    val_metric: str = "example_f1"
    val_batch_size: int = 512
    max_seconds: float | None = None

    def learner_config(self) -> LearnerConfig:
        return LearnerConfig(
            lr=self.lr, batch_size=self.batch_size, seed=self.seed, max_steps=self.max_steps,
            greedy_rearrangement=self.greedy_rearrangement, temperature=self.temperature,
            grad_clip=self.grad_clip,
        )


@dataclass
class TrainHistory:
    """One dict per epoch (loss, validation metrics, docs/s) plus where the best epoch was."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("nan")
    config: dict = field(default_factory=dict)


def _check(config: TrainConfig, learner: str) -> None:
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")
    if config.val_metric not in RANKING_NAMES + SET_NAMES:
        raise ValueError(f"val_metric must be one of {RANKING_NAMES + SET_NAMES}, got {config.val_metric!r}")
    if config.batch_size < 1 or config.epochs < 0:
        raise ValueError(f"need batch_size >= 1 and epochs >= 0, got {config.batch_size}, {config.epochs}")


def validation_metrics(policy: ChainPolicy, val: Split, batch_size: int, max_steps: int | None) -> dict[str, float]:
    """Greedy decode of the validation split, scored by envs.metrics.evaluate."""
    Y_pred, scores = predict(policy, val.X, batch_size=batch_size, max_steps=max_steps)
    return evaluate(val.Y, scores=scores, Y_pred=Y_pred)


def train_epochs(
    policy: ChainPolicy,
    train: Split,
    config: TrainConfig,
    *,
    learner: str = "freq2rare",
    label_freq: np.ndarray | None = None,
    val: Split | None = None,
    progress: bool = True,
    log_fn: Callable[[int, dict], None] | None = None,
) -> TrainHistory:
    """Train `policy` in place with `learner` (any of agents.learners.LEARNERS) and return its history.

    Warm start = pass a loaded policy. Without `val`, `config.val_fraction` of `train` is held out
    (0 = no validation, no early stopping). label_freq defaults to the training split's label counts.
    log_fn(epoch, record) receives each epoch's record (e.g. to write TensorBoard scalars).
    """
    _check(config, learner)
    if val is None and config.val_fraction > 0:
        train, val = carve_validation(train, config.val_fraction, config.seed)
    trainer = make_learner(learner, policy, train, config.learner_config(), label_freq=label_freq)
    rng = np.random.default_rng(config.seed)
    history = TrainHistory(config={**asdict(config), "learner": learner})
    best_state, bad_epochs, started = None, 0, time.perf_counter()
    n_docs = len(train)
    bar = tqdm(total=config.epochs * n_docs, disable=not progress, unit="doc", desc=f"train[{learner}]")
    for epoch in range(config.epochs):
        epoch_start, losses = time.perf_counter(), []
        order = rng.permutation(n_docs)
        for begin in range(0, n_docs, config.batch_size):
            rows = np.sort(order[begin : begin + config.batch_size])
            scalars = trainer.update(rows)
            losses.append(scalars.get("losses/total", scalars.get("losses/teacher_forcing", np.nan)))
            bar.update(len(rows))
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "docs_per_sec": n_docs / max(seconds, 1e-9)}
        if val is not None:
            metrics = validation_metrics(policy, val, config.val_batch_size, trainer.task.max_steps)
            record.update({f"val/{k}": v for k, v in metrics.items()})
            score = metrics[config.val_metric]
            if is_better(config.val_metric, score, None if best_state is None else history.best_score):
                history.best_epoch, history.best_score = epoch, metrics[config.val_metric]
                best_state, bad_epochs = copy.deepcopy(policy.state_dict()), 0
            else:
                bad_epochs += 1
        history.epochs.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", **({"val": f"{history.best_score:.3f}"} if val is not None else {}))
        if log_fn is not None:
            log_fn(epoch, record)
        out_of_time = config.max_seconds is not None and time.perf_counter() - started > config.max_seconds
        if (val is not None and bad_epochs > config.patience) or out_of_time:
            break
    bar.close()
    if best_state is not None:
        policy.load_state_dict(best_state)
    policy.eval()
    return history

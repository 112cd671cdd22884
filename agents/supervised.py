"""Supervised learners of the chain policy: teacher forcing on a fixed label ordering (the baselines)
and target rearrangement (the policy's own sampled order, corrected towards the gold set).

Both share one minibatch loop over documents: targets are padded into a (B, T) tensor and the
whole batch goes through `policy.sequence_logits` in one pass. Validation decodes greedily and
early-stops on a metric of `envs.metrics.evaluate`, restoring the best weights.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.decoding import greedy_decode, predict, sample_decode
from agents.policy import ChainPolicy
from agents.rearrangement import ordered_targets, rearranged_target_matrix
from envs.dataset import Split
from envs.metrics import RANKING_NAMES, SET_NAMES, evaluate
from envs.orderings import ORDERINGS, LabelOrdering

REARRANGE = "rearrange"
LOWER_IS_BETTER = {"hamming_loss"}


def teacher_forcing_loss(
    policy: ChainPolicy, X_batch, targets: torch.Tensor, *, mask_emitted: bool = True
) -> torch.Tensor:
    """Mean cross-entropy over the non-padding positions of `targets` (B, T; STOP-terminated, -1 pad).

    With `mask_emitted`, labels earlier in the same target sequence are excluded from each softmax,
    the same masking the decoders apply, so training and decoding see one distribution.
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=policy.input_weight.device)
    logits, _ = policy.sequence_logits(X_batch, targets)
    present = targets >= 0
    if mask_emitted:
        one_hot = torch.zeros_like(logits, dtype=torch.bool)
        one_hot.scatter_(2, targets.clamp(min=0)[:, :, None], present[:, :, None])
        emitted_before = ((one_hot.cumsum(dim=1) - one_hot.long()) > 0) & present[:, :, None]
        logits = logits.masked_fill(emitted_before, float("-inf"))
    log_p = torch.log_softmax(logits, dim=-1).gather(2, targets.clamp(min=0)[:, :, None]).squeeze(2)
    return -torch.where(present, log_p, torch.zeros_like(log_p)).sum() / present.sum().clamp(min=1)


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Random (train, validation) partition of `split`; the validation part has round(n * fraction) rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(split)
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"cannot carve {fraction:.0%} of {n} documents into a non-empty validation split")
    perm = np.random.default_rng(seed).permutation(n)
    return split.subset(np.sort(perm[n_val:])), split.subset(np.sort(perm[:n_val]))


@dataclass
class TrainConfig:
    """Knobs of `train_supervised`; `max_steps` None = (most labels of a training document) + 1."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 5
    max_steps: int | None = None
    greedy_rearrangement: bool = False
    sample_temperature: float = 1.0
    mask_emitted: bool = True
    grad_clip: float | None = 5.0
    val_metric: str = "example_f1"
    val_batch_size: int = 512
    max_seconds: float | None = None


@dataclass
class TrainHistory:
    """One dict per epoch (loss, validation metrics, docs/s) plus where the best epoch was."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("nan")
    config: dict = field(default_factory=dict)


def _validate_args(config: TrainConfig, ordering: str | None) -> None:
    if ordering is not None and ordering != REARRANGE and ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, {REARRANGE!r} or None, got {ordering!r}")
    if config.val_metric not in RANKING_NAMES + SET_NAMES:
        raise ValueError(f"val_metric must be one of {RANKING_NAMES + SET_NAMES}, got {config.val_metric!r}")
    if config.batch_size < 1 or config.epochs < 0:
        raise ValueError(f"need batch_size >= 1 and epochs >= 0, got {config.batch_size}, {config.epochs}")


def validation_metrics(policy: ChainPolicy, val: Split, config: TrainConfig, max_steps: int) -> dict[str, float]:
    """Greedy decode of the validation split, scored by envs.metrics.evaluate."""
    Y_pred, scores = predict(policy, val.X, batch_size=config.val_batch_size, max_steps=max_steps)
    return evaluate(val.Y, scores=scores, Y_pred=Y_pred)


def train_supervised(
    policy: ChainPolicy,
    train: Split,
    config: TrainConfig,
    *,
    ordering: str | None = "freq2rare",
    label_freq: np.ndarray | None = None,
    val: Split | None = None,
    progress: bool = True,
    log_fn: Callable[[int, dict], None] | None = None,
) -> TrainHistory:
    """Train `policy` in place (warm start = pass a loaded policy) and return its history.

    ordering: one of ORDERINGS (teacher forcing on that fixed order) or None / "rearrange" (target
    rearrangement on chains sampled from the current policy, or greedy ones with
    `config.greedy_rearrangement`). label_freq defaults to the training split's label counts.
    Without `val`, `config.val_fraction` of `train` is held out (0 = no validation, no early stop).
    log_fn(epoch, record) receives each epoch's record (e.g. to write TensorBoard scalars).
    """
    _validate_args(config, ordering)
    if train.Y.shape[1] != policy.n_labels or train.X.shape[1] != policy.n_features:
        raise ValueError(
            f"policy is {policy.n_features} features x {policy.n_labels} labels, "
            f"train split is {train.X.shape[1]} x {train.Y.shape[1]}"
        )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = torch.Generator(device=policy.input_weight.device).manual_seed(config.seed)
    if val is None and config.val_fraction > 0:
        train, val = carve_validation(train, config.val_fraction, config.seed)
    freq = np.asarray(train.Y.sum(axis=0)).ravel() if label_freq is None else np.asarray(label_freq)
    fixed = None if ordering in (None, REARRANGE) else LabelOrdering(ordering, freq, seed=config.seed)
    max_labels = int(np.diff(train.Y.indptr).max(initial=0))
    max_steps = config.max_steps if config.max_steps is not None else max_labels + 1
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history = TrainHistory(config={**asdict(config), "ordering": ordering or REARRANGE})
    sign = -1.0 if config.val_metric in LOWER_IS_BETTER else 1.0
    best_state, bad_epochs, started = None, 0, time.perf_counter()
    n_docs = len(train)
    bar = tqdm(total=config.epochs * n_docs, disable=not progress, unit="doc", desc=f"train[{ordering or REARRANGE}]")
    for epoch in range(config.epochs):
        policy.train()
        epoch_start, loss_sum, n_batches = time.perf_counter(), 0.0, 0
        order = rng.permutation(n_docs)
        for begin in range(0, n_docs, config.batch_size):
            rows = np.sort(order[begin : begin + config.batch_size])
            X_batch, Y_batch = train.X[rows], train.Y[rows]
            if fixed is not None:
                targets = ordered_targets(Y_batch, fixed)
            else:
                targets = _rearranged_batch(policy, X_batch, Y_batch, config, max_steps, sampler, rng)
            loss = teacher_forcing_loss(policy, X_batch, targets, mask_emitted=config.mask_emitted)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum, n_batches = loss_sum + float(loss.detach()), n_batches + 1
            bar.update(len(rows))
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch, "loss": loss_sum / max(n_batches, 1), "docs_per_sec": n_docs / max(seconds, 1e-9)}
        if val is not None:
            metrics = validation_metrics(policy, val, config, max_steps)
            record.update({f"val/{k}": v for k, v in metrics.items()})
            score = sign * metrics[config.val_metric]
            if best_state is None or score > sign * history.best_score:
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


def _rearranged_batch(policy, X_batch, Y_batch, config: TrainConfig, max_steps: int, sampler, rng) -> np.ndarray:
    """Decode the batch with the current policy (eval mode, no grad), then rearrange towards gold."""
    policy.eval()
    with torch.no_grad():
        if config.greedy_rearrangement:
            chains = greedy_decode(policy, X_batch, max_steps=max_steps)
        else:
            chains = sample_decode(
                policy, X_batch, max_steps=max_steps, temperature=config.sample_temperature, generator=sampler
            )
    policy.train()
    return rearranged_target_matrix(chains.labels.cpu().numpy(), Y_batch, rng)

"""Run-folder plumbing shared by experiment scripts: names, TensorBoard writers, checkpoints, resume.

A run lives in `runs/{dataset}__{group}__{seed}__{unix time}/` (CleanRL's naming, with the learner
or learner group in the experiment slot). Scripts write TensorBoard events through `open_writer`,
checkpoints through `save_checkpoint` (atomic: a half-written checkpoint would make a crashed run
unresumable), and draw minibatches from a `BatchSampler` whose state travels in the checkpoint, so
a resumed run sees the same data order as an uninterrupted one.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy import ChainPolicy
from envs.atomic import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
POLICY_DIR = "policy"  # a learner's best-on-validation weights, as ChainPolicy.save writes them


# ----------------------------------------------------------------------------- run folders
def run_name(dataset: str, group: str, seed: int, started: float | None = None) -> str:
    """`{dataset}__{group}__{seed}__{unix time}`; `group` is a learner name or a group name."""
    for part, text in (("dataset", dataset), ("group", group)):
        if not text or "__" in text or "/" in text or os.sep in text:
            raise ValueError(f"{part} {text!r} cannot be part of a run name (empty, '__' or '/')")
    return f"{dataset}__{group}__{seed}__{int(time.time() if started is None else started)}"


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Make a fresh run folder; a clash (same name in the same second) gets a `-1`, `-2`... suffix."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        folder = runs_dir / (name if attempt == 0 else f"{name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"{runs_dir}: could not create a run folder named {name}")


def hparams_markdown(params: dict[str, Any]) -> str:
    """CleanRL's hyperparameter table, shown in TensorBoard's TEXT tab."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in params.items())
    return "|param|value|\n|-|-|\n" + rows


def open_writer(log_dir: str | Path, purge_step: int | None = None):
    """TensorBoard writer; `purge_step` hides events a crashed session logged at or after that step.

    TensorBoard reads event files in name order and a purge only hides events read before it, so
    the new file must sort after the old ones. Names start with the whole second they were opened
    in (then host, pid and a per-process counter that does not sort numerically), so when an event
    file of this second already exists we wait for the next second.
    """
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    newest = max((_event_file_second(p) for p in log_dir.glob("events.out.tfevents.*")), default=-1)
    while int(time.time()) <= newest:
        time.sleep(0.05)
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def _event_file_second(path: Path) -> int:
    try:
        return int(path.name.split(".")[3])
    except (IndexError, ValueError):
        return -1


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar curves of one event folder as {tag: [(step, value), ...]}, purges applied."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: never half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; the error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    try:
        # Our own files: they hold numpy RNG states and plain dicts, which weights_only rejects.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # corrupt or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a checkpoint of this project (expected a dict)")
    return payload


def policy_from_state(config: dict[str, Any], weights: dict[str, Any] | None = None) -> ChainPolicy:
    """Rebuild a policy from its `.config` (as stored in checkpoints) and optionally its weights."""
    policy = ChainPolicy.from_config(config)
    if weights is not None:
        policy.load_state_dict(weights)
    return policy


def load_policy(source: str | Path) -> ChainPolicy:
    """A policy from a `ChainPolicy.save` folder, a learner folder of a run, or its checkpoint.pt
    (the checkpoint's best-on-validation weights)."""
    source = Path(source)
    if source.is_dir() and (source / POLICY_DIR).is_dir():
        source = source / POLICY_DIR
    if source.is_dir():
        return ChainPolicy.load(source)
    state = load_checkpoint(source)
    if "best_policy" not in state or "policy_config" not in state:
        raise ValueError(f"{source}: not a training checkpoint (no best_policy / policy_config)")
    return policy_from_state(state["policy_config"], state["best_policy"])


# ----------------------------------------------------------------------------- data order
class BatchSampler:
    """Minibatches of row indices: shuffled epochs without replacement, rows sorted within a batch.

    The whole state (RNG, current permutation, position) goes into `state_dict`, so a resumed run
    draws exactly the batches the uninterrupted run would have drawn.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int) -> None:
        if n_rows < 1 or batch_size < 1:
            raise ValueError(f"need n_rows >= 1 and batch_size >= 1, got {n_rows}, {batch_size}")
        self.n_rows, self.batch_size = n_rows, min(batch_size, n_rows)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(n_rows)
        self.position = 0
        self.epoch = 0

    def next(self) -> np.ndarray:
        """Next batch (sorted: CSR row slicing is faster, and learners don't care about order)."""
        if self.position + self.batch_size > self.n_rows:  # drop the ragged tail: equal batch sizes
            self.order = self.rng.permutation(self.n_rows)
            self.position = 0
            self.epoch += 1
        rows = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return np.sort(rows)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.copy(),
            "position": self.position,
            "epoch": self.epoch,
            "n_rows": self.n_rows,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["n_rows"], state["batch_size"]) != (self.n_rows, self.batch_size):
            raise ValueError(
                f"checkpoint sampler is {state['n_rows']} rows x batch {state['batch_size']}, "
                f"this run has {self.n_rows} x {self.batch_size}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"]).copy()
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])


# ----------------------------------------------------------------------------- Ctrl-C
class GracefulInterrupt:
    """Turns the first Ctrl-C into a flag the training loop polls between updates.

    A KeyboardInterrupt raised in the middle of an optimiser step could leave half-updated weights
    behind; polling lets the loop finish the update, checkpoint, and exit cleanly. A second Ctrl-C
    raises KeyboardInterrupt as usual. Outside the main thread (no signals) it is a plain flag.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "GracefulInterrupt":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing the current update, then writing a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

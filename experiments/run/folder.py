"""Run-folder plumbing shared by experiment scripts: names, TensorBoard writers, checkpoints, resume.

A run lives in `runs/{dataset}__{group}__{seed}__{unix time}/` (CleanRL's naming, with the learner
or learner group in the experiment slot). Scripts write TensorBoard events through `open_writer`,
checkpoints through `save_checkpoint` (atomic: a half-written checkpoint would make a crashed run
unresumable), and draw minibatches from a `BatchSampler` whose state travels in the checkpoint, so
a resumed run sees the same data order as an uninterrupted one.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, TypeVar

import numpy as np

from labelchain.agents.policy import ChainPolicy
from labelchain.agents.torch_files import UnsafeFileError, load_torch_file, save_torch_file
from labelchain.envs.atomic import atomic_write
from labelchain.experiments.run.config import ArgsError

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
POLICY_DIR = "policy"  # a learner's best-on-validation weights, as ChainPolicy.save writes them
CHECKPOINT_KEYS = ("finished", "policy_config", "best_policy")  # what every train_rl checkpoint holds
T = TypeVar("T")
LOCK_FILE = ".lock"  # held (fcntl.flock) by the one train_rl process working in a run folder


class DiskFullError(OSError):
    """ENOSPC while writing a run's files: reported in one line, with what to do, not a traceback."""

    def __str__(self) -> str:
        return str(self.strerror)


class RunAborted(Exception):
    """A run stopped by a second Ctrl-C: one line saying what is kept and how to resume (exit 130)."""


def disk_is_full(error: BaseException, folder: str | Path) -> bool:
    """ENOSPC / EDQUOT, or a library's RuntimeError about a failed write (torch's zip writer says
    "[enforce fail at inline_container.cc ...]") while `folder`'s disk has almost no space left."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(error)
    if "No space left on device" in text:
        return True
    if isinstance(error, RuntimeError) and ("inline_container" in text or "write failed" in text):
        try:
            return shutil.disk_usage(folder).free < 64 * 2**20
        except OSError:
            return False
    return False


@contextmanager
def quiet_disk_full_in_threads() -> Iterator[None]:
    """TensorBoard's writer thread dies on a full disk with a traceback on stderr, then re-raises the
    same OSError in the training thread, which reports it in one line: silence the thread's copy."""
    previous = threading.excepthook

    def hook(info: threading.ExceptHookArgs) -> None:
        if not (isinstance(info.exc_value, OSError) and disk_is_full(info.exc_value, ".")):
            previous(info)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def run_script(body: Callable[[], T]) -> T:
    """A script's `__main__` step: the errors a user can cause end in one line on stderr (rc 1), a
    second Ctrl-C in one line too (rc 130), never in a traceback."""
    from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
    from labelchain.experiments.grid.results_file import ResultsFileError

    try:
        return body()
    except (ArgsError, DiskFullError, DataNotFoundError, DataFormatError, ResultsFileError) as error:
        sys.exit(f"error: {' '.join(str(error).split())}")
    except OSError as error:  # a grid's own results file on a full disk (train_rl's come as DiskFullError)
        if not disk_is_full(error, "."):
            raise
        sys.exit(
            f"error: the disk is full ({error.filename or 'ENOSPC'}); free some space, then run the same command again to resume"
        )
    except (RunAborted, KeyboardInterrupt) as error:
        print(f"\ninterrupted: {error or 'aborted'}", file=sys.stderr, flush=True)
        sys.exit(130)


# ----------------------------------------------------------------------------- run folders
def run_name(dataset: str, group: str, seed: int, started: float | None = None) -> str:
    """`{dataset}__{group}__{seed}__{unix time}`; `group` is a learner name or a group name."""
    for part, text in (("dataset", dataset), ("group", group)):
        if not text or "__" in text or "/" in text or os.sep in text:
            raise ValueError(f"{part} {text!r} cannot be part of a run name (empty, '__' or '/')")
    return f"{dataset}__{group}__{seed}__{int(time.time() if started is None else started)}"


def run_name_part(dataset: str) -> str:
    """The dataset's part of a run name: a name as given, a folder or file by its own name
    (`../data/mulan/emotions/` -> `emotions`), with '__' (the name separator) made '_'."""
    text = dataset.rstrip("/" + os.sep)
    if "/" in text or os.sep in text:
        text = Path(text).name
    while "__" in text:
        text = text.replace("__", "_")
    return text


def check_writable_folder(folder: str | Path, flag: str, create: bool) -> None:
    """Fail early (before any data is loaded) when runs cannot be written into `folder`.

    `create`: make it (and its parents) if missing, as a new run does with --runs-dir; otherwise
    it must exist (a --resume folder).
    """
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise ArgsError(f"{flag} {folder}: no such folder")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ArgsError(f"{flag} {folder}: cannot write there ({error.strerror or error})") from None


class RunLock:
    """An OS lock on `<run folder>/.lock`, held while one process trains in that folder.

    `fcntl.flock` is released by the OS when the process exits, however it exits, so a killed run
    leaves no stale lock behind. A second process gets an ArgsError naming the folder.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._handle: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        import fcntl  # POSIX only, like the rest of the run plumbing's signals

        handle = open(self.run_dir / LOCK_FILE, "a")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ArgsError(
                f"{self.run_dir} is in use by another train_rl process (it holds "
                f"{self.run_dir / LOCK_FILE}); wait for it to end or stop it first"
            ) from None
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


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


def scalar_events(log_dir: str | Path) -> dict[str, list[Any]]:
    """Every scalar event (`.step`, `.wall_time`, `.value`) of one event folder, by tag.

    Read through TensorBoard's EventAccumulator with no sampling, so purged steps of a resumed run
    are dropped exactly as TensorBoard shows them.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialised in memory, then written atomically: never half a checkpoint, and a full disk is
    an OSError(ENOSPC) from the write (agents.torch_files), reported as DiskFullError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch_file(path, payload, write=atomic_write)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise DiskFullError(errno.ENOSPC, f"{path}: the disk is full (ENOSPC) while writing a checkpoint") from None


class CheckpointError(ArgsError):
    """A checkpoint that cannot be used: unreadable, unsafe, or of another run (one line, names the file)."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (weights-only: a crafted file runs nothing)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        payload = load_torch_file(path)
    except (UnsafeFileError, OSError) as error:
        raise CheckpointError(str(error)) from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: not a train_rl checkpoint (no {', '.join(missing)}); delete it or start a new run"
        )
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
    try:
        return policy_from_state(state["policy_config"], state["best_policy"])
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as error:
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise CheckpointError(f"{source}: its best_policy does not fit its policy_config ({detail})") from None


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
            "order": self.order.tolist(),  # plain ints: weights-only loading reads them
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
SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what `kill`, schedulers and containers send


class GracefulInterrupt:
    """Turns the first Ctrl-C or SIGTERM into a flag the training loop polls between updates.

    A KeyboardInterrupt raised in the middle of an optimiser step could leave half-updated weights
    behind; polling lets the loop finish the update, checkpoint, and exit cleanly. A second signal
    raises KeyboardInterrupt as usual. Outside the main thread (no signals) it is a plain flag.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulInterrupt":
        try:
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: finishing the current update, then writing a checkpoint (Ctrl-C again to abort)", flush=True)

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

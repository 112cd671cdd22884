"""One learner's training inside a run folder: the update loop, validation, checkpoints and curves.

`train_rl` decides *what* a learner is (its policy, its `Learner`, its warm start); a `LearnerRun`
trains it: every `Schedule.eval_every` updates it validates, keeps the best-on-validation weights
(never the starting point at update 0), writes `checkpoint.pt` every `checkpoint_every` updates and
when stopped, and logs TensorBoard scalars. Everything a resumed run needs travels in the
checkpoint (`Progress`, the learner's and the sampler's states, the best weights), so a resumed run
ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelchain.agents.learner_base import Learner
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.training import out_of_patience, validation_metrics
from labelchain.envs.data.dataset import Split
from labelchain.envs.mcg import MCGSpec
from labelchain.envs.metrics import is_better
from labelchain.experiments.run.reporting import report
from labelchain.envs.progress import progress_bar
from labelchain.experiments.run.folder import (
    CHECKPOINT_FILE,
    POLICY_DIR,
    BatchSampler,
    GracefulInterrupt,
    hparams_markdown,
    open_writer,
    policy_from_state,
    save_checkpoint,
)

PREDICT_BATCH = 512  # documents decoded at once for validation and test


@dataclass
class RunData:
    """The splits every learner of a run sees: train minus validation, validation, test."""

    train: Split
    val: Split
    test: Split
    label_freq: np.ndarray
    max_steps: int
    mcg: MCGSpec | None = None  # --guidance mcg: train's labels carry their clusters (agents.mcg)
    identity: dict[str, Any] | None = None  # the data's identity, checked on --resume (run.identity)
    dataset_hash: str = ""  # envs.data.fingerprint.content_hash of the loaded dataset (saved predictions carry it)
    prior_columns: int = 0  # --prior: every part's X ends with one prior column per label (agents.prior_columns)
    shortlist: Any = None  # --shortlist: train's (n, L) bool CSR action spaces, for the environments

    @property
    def n_features(self) -> int:
        """Text features per document (test's width: with --guidance bcl, train carries gold cluster columns
        too; with --prior, every part carries the prior columns after them)."""
        return int(np.shape(self.test.X)[1]) - self.prior_columns

    @property
    def n_labels(self) -> int:
        """Actions per step before STOP (with --guidance mcg: labels and cluster tokens)."""
        return int(self.train.Y.shape[1])

    @property
    def label_train(self) -> Split:
        """The training split with label columns only (MCG's cluster columns dropped), for the floor."""
        return self.train if self.mcg is None else Split(self.train.X, self.mcg.strip(self.train.Y))


@dataclass
class Schedule:
    """When a learner stops, validates and checkpoints, and what "best" means."""

    updates: int
    eval_every: int
    checkpoint_every: int
    select_metric: str
    progress_bar: bool = True
    patience: int | None = None  # validations without improvement (of either checkpoint) before stopping
    set_metric: str | None = None  # a second best checkpoint (e.g. example_f1) for the label sets


@dataclass
class Progress:
    """Where one learner's training stands; saved in its checkpoint (as a plain dict)."""

    update: int = 0
    best_update: int = -1
    best_score: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_set_update: int = -1  # the second checkpoint (Schedule.set_metric), when there is one
    best_set_score: float | None = None
    stopped_early: bool = False
    return_ema: float | None = None  # smoothed training return, for the progress bar
    label_steps: float = 0.0
    docs: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Progress":
        return cls(**values)


class UpdateBudget:
    """Updates the current call may still run, shared by its learners (`--stop-after-updates`)."""

    def __init__(self, limit: int | None) -> None:
        self.remaining = limit  # None = unlimited

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def spend(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


def checkpoint_path(learner_dir: Path) -> Path:
    return learner_dir / CHECKPOINT_FILE


def discard_events(learner_dir: Path) -> None:
    """Delete the TensorBoard events of a start that died before its first checkpoint.

    The learner restarts from update 0, so those events would show as a second curve whose steps
    go backwards; the restart's events replace them.
    """
    stale = sorted(learner_dir.glob("events.out.tfevents.*"))
    for path in stale:
        path.unlink()
    if stale:
        print(f"{learner_dir}: no checkpoint, starting this learner again (removed {len(stale)} old event files)")


def finish_saved_learner(learner_dir: Path, state: dict[str, Any]) -> None:
    """A learner whose final checkpoint exists: write its policy folder if a stop came before it."""
    if not (learner_dir / POLICY_DIR).is_dir():
        policy_from_state(state["policy_config"], state["best_policy"]).save(learner_dir / POLICY_DIR)


class LearnerRun:
    """Trains one learner (fresh or from `state`, its last checkpoint) in `learner_dir`."""

    def __init__(
        self,
        name: str,
        learner: Learner,
        sampler: BatchSampler,
        data: RunData,
        schedule: Schedule,
        learner_dir: Path,
        hparams: dict[str, Any],
        state: dict[str, Any] | None = None,
        stamp: dict[str, Any] | None = None,
    ) -> None:
        self.stamp = stamp  # the run this learner belongs to, recorded in each checkpoint
        self.name, self.learner, self.sampler, self.data, self.schedule = name, learner, sampler, data, schedule
        self.policy: ChainPolicy = learner.policy
        self.learner_dir = learner_dir
        self.progress = Progress()
        self.last_val: dict[str, float] = {}  # the latest validation metrics, for a grid's reports
        self.best_policy = copy.deepcopy(self.policy.state_dict())
        self.best_set_policy = copy.deepcopy(self.best_policy) if schedule.set_metric else None
        if state is not None:
            learner.load_state_dict(state["learner"])
            sampler.load_state_dict(state["sampler"])
            self.progress, self.best_policy = Progress.from_dict(state["progress"]), state["best_policy"]
            self.best_set_policy = state.get("best_set_policy")
        if state is None:
            discard_events(learner_dir)
        # A resumed run hides what a crashed session logged after its last checkpoint.
        self.writer = open_writer(learner_dir, purge_step=self.progress.update + 1 if state is not None else None)
        if state is None:
            self.writer.add_text("hyperparameters", hparams_markdown(hparams))
            self.validate()  # step 0: the starting point (matters for warm-started learners)

    def validate(self) -> None:
        started = time.perf_counter()
        metrics = validation_metrics(
            self.policy, self.data.val, PREDICT_BATCH, self.data.max_steps, self.learner.config.precision
        )
        self.last_val = metrics
        progress = self.progress
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", value, progress.update)
        # Step 0 is only a reference point: a warm-started learner must not win with its starting policy.
        score = metrics[self.schedule.select_metric]
        if progress.update > 0 and is_better(self.schedule.select_metric, score, progress.best_score):
            progress.best_update, progress.best_score, progress.best_metrics = progress.update, score, metrics
            self.best_policy.update(copy.deepcopy(self.policy.state_dict()))
        set_metric = self.schedule.set_metric
        if set_metric and progress.update > 0 and is_better(set_metric, metrics[set_metric], progress.best_set_score):
            progress.best_set_update, progress.best_set_score = progress.update, metrics[set_metric]
            self.best_set_policy = copy.deepcopy(self.policy.state_dict())
        progress.eval_seconds += time.perf_counter() - started

    def out_of_patience(self) -> bool:
        """No improvement of either checkpoint in the last `patience` validations."""
        patience, progress = self.schedule.patience, self.progress
        if patience is None or progress.best_update < 0:
            return False
        last = max(progress.best_update, progress.best_set_update)
        return out_of_patience((progress.update - last) // self.schedule.eval_every, patience)

    def checkpoint(self, finished: bool) -> None:
        save_checkpoint(
            checkpoint_path(self.learner_dir),
            {
                "learner_name": self.name,
                "finished": finished,
                **({"run": self.stamp} if self.stamp is not None else {}),
                "policy_config": self.policy.config,
                "learner": self.learner.state_dict(),
                "sampler": self.sampler.state_dict(),
                "progress": asdict(self.progress),
                "best_policy": self.best_policy,
                **({"best_set_policy": self.best_set_policy} if self.best_set_policy is not None else {}),
            },
        )

    def train(self, interrupt: GracefulInterrupt, budget: UpdateBudget) -> bool:
        """Run updates to the end of the schedule; False when stopped early (checkpointed, resumable)."""
        schedule, progress = self.schedule, self.progress
        bar = progress_bar(
            schedule.progress_bar, total=schedule.updates, initial=progress.update, desc=self.name, unit="upd"
        )
        session = _SessionRate()
        try:
            while progress.update < schedule.updates:
                self._one_update(session)
                step = progress.update
                validated = step % schedule.eval_every == 0 or step == schedule.updates
                if validated:
                    self.validate()
                    progress.stopped_early = self.out_of_patience()
                budget.spend()
                stopped = interrupt.requested or budget.exhausted
                done = step == schedule.updates or progress.stopped_early
                checkpointed = done or stopped or step % schedule.checkpoint_every == 0
                if checkpointed:
                    self.checkpoint(finished=done)
                if validated or checkpointed:  # a grid's progress line, or Ray Tune (with the checkpoint)
                    report(
                        {
                            "learner": self.name,
                            "update": step,
                            **{f"val/{key}": value for key, value in self.last_val.items()},
                        },
                        self.learner_dir.parent if checkpointed else None,
                    )
                if progress.stopped_early:
                    break
                bar.set_postfix(  # shown at the bar's next refresh (a log gets a line every LOG_INTERVAL s)
                    ret=f"{progress.return_ema or 0.0:.3f}", best=f"{progress.best_score or 0.0:.3f}", refresh=False
                )
                bar.update(1)
                if stopped and not done:
                    return False
        finally:
            bar.close()
            self.writer.close()
        policy_from_state(self.policy.config, self.best_policy).save(self.learner_dir / POLICY_DIR)
        return True

    def _one_update(self, session: "_SessionRate") -> None:
        progress = self.progress
        rows = self.sampler.next()
        started = time.perf_counter()
        scalars = self.learner.update(rows)
        progress.train_seconds += time.perf_counter() - started
        progress.update += 1
        step = progress.update
        label_steps = float(scalars.get("charts/label_steps", 0.0))
        progress.label_steps += label_steps
        progress.docs += len(rows)
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        steps_per_sec, docs_per_sec = session.add(label_steps, len(rows))
        self.writer.add_scalar("perf/steps_per_sec", steps_per_sec, step)
        self.writer.add_scalar("perf/docs_per_sec", docs_per_sec, step)
        episodic = scalars.get("charts/episodic_return")
        if episodic is not None:
            ema = progress.return_ema
            progress.return_ema = episodic if ema is None else 0.9 * ema + 0.1 * episodic


class _SessionRate:
    """Label-steps and documents per second of this call (a resumed run starts a new session)."""

    def __init__(self) -> None:
        self.started, self.label_steps, self.docs = time.perf_counter(), 0.0, 0

    def add(self, label_steps: float, docs: int) -> tuple[float, float]:
        self.label_steps, self.docs = self.label_steps + label_steps, self.docs + docs
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return self.label_steps / elapsed, self.docs / elapsed

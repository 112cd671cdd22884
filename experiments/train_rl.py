"""Train label-chain policies with several learners on one dataset and compare them on test.

    python experiments/train_rl.py                      # bibtex: 4 fixed orderings, rearrange, combined
    python experiments/train_rl.py --dataset emotions --learners rearrange ppo --updates 300
    python experiments/train_rl.py --resume runs/bibtex__6learners__0__1700000000
    tensorboard --logdir runs

Each learner trains its own copy of the shared `ChainPolicy` for `updates` minibatch steps on the
training split minus a validation slice. Every `eval_every` updates the policy is decoded greedily
on the validation slice; the best-on-validation weights (by `select_metric`, among updates >= 1: the
starting point at update 0 is logged but never kept) are decoded on the test split, once, at the end. RL learners (reinforce, ppo, combined) start by
default from this run's rearrangement policy (`--warm-start rearrange`): RL from scratch over
hundreds of labels mostly samples junk, and self-critical training customarily starts from a
supervised model; that policy's updates are then on top of the rearrangement budget.

Run folder `runs/{dataset}__{group}__{seed}__{unix time}/`: group is the learner's name for one
learner, the names joined by "+" for a few, `{n}learners` when that exceeds 40 characters (or
`--group-name`). Inside: `config.json` (Args + derived values), `metrics.json`, and one subfolder
per learner with its TensorBoard events, `checkpoint.pt` and `policy/` (best-on-validation weights,
loadable with `ChainPolicy.load`). One event folder per learner means TensorBoard overlays the
learners' curves under the same tags: `charts/episodic_return`, `losses/*`, `eval/*` (validation),
`perf/steps_per_sec` (label-steps/s of training) and `perf/docs_per_sec`.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import execution
import numpy as np
import torch
from common import atomic_write_json, parse_args, single_thread
from run_report import PREDICT_BATCH, final_evaluation, results_table
from tqdm.auto import tqdm

from agents.learners import FIXED_ORDERINGS, LEARNERS, LearnerConfig, make_learner
from agents.policy import ChainPolicy
from agents.supervised import carve_validation
from agents.training import validation_metrics
from envs.chain_task import default_max_steps
from envs.data.dataset import Split
from envs.data.errors import DataFormatError, DataNotFoundError
from envs.data.loading import load_dataset
from envs.metrics import RANKING_NAMES, SET_NAMES, is_better
from runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    POLICY_DIR,
    BatchSampler,
    GracefulInterrupt,
    create_run_dir,
    hparams_markdown,
    load_checkpoint,
    load_policy,
    open_writer,
    policy_from_state,
    run_name,
    save_checkpoint,
)

RL_LEARNERS = ("reinforce", "ppo", "combined")


@dataclass
class Args:
    """Train label-chain policies (fixed orderings, rearrangement, RL) and compare them on test."""

    dataset: str = field(default="bibtex", metadata={"help": "dataset name or folder (see envs.data.loading)"})
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    learners: list[str] = field(
        default_factory=lambda: [*FIXED_ORDERINGS, "rearrange", "combined"],
        metadata={"help": f"learners to train, from {LEARNERS}"},
    )
    updates: int = field(default=500, metadata={"help": "optimisation steps per learner"})
    batch_size: int = field(default=64, metadata={"help": "documents per update"})
    hidden_size: int = field(default=128, metadata={"help": "GRU hidden size (also document encoding size)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the document encoding and GRU output"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of supervised learners"})
    rl_lr: float | None = field(
        default=3e-4, metadata={"help": "learning rate of reinforce/ppo/combined (none = --lr); lower "
                                        "because they fine-tune a warm start (bibtex seed 0: 1e-3 drifted "
                                        "below the start on val nDCG@3, 3e-4 rose above it)"},
    )
    reward: str = field(default="f1", metadata={"help": "RL reward metric (envs.rewards)"})
    reward_mode: str = field(default="delta", metadata={"help": "'delta' per-step or 'terminal'"})
    baseline: str = field(default="value", metadata={"help": "RL baseline: value, self_critical, none"})
    entropy_coef: float = 0.01
    ppo_lr: float | None = field(
        default=5e-5, metadata={"help": "learning rate of ppo (none = --rl-lr): it takes ppo_epochs x "
                                        "ppo_minibatches steps per rollout (bibtex seed 0, 100 updates from "
                                        "the warm start: 3e-4 drifted val nDCG@3 0.579 -> 0.501, 5e-5 held 0.578-0.584)"},
    )
    ppo_epochs: int = field(default=4, metadata={"help": "PPO: passes over each rollout"})
    ppo_minibatches: int = field(default=4, metadata={"help": "PPO: minibatches per pass"})
    rl_weight: float = field(default=0.9, metadata={"help": "combined: weight of RL vs rearrangement loss"})
    warm_start: str | None = field(
        default="rearrange",
        metadata={"help": "RL learners start from: 'rearrange' (this run's rearrangement policy, if "
                          "trained), a saved policy folder / checkpoint.pt / learner folder, or none"},
    )
    rearrange_warm_start: str | None = field(
        default=None, metadata={"help": "rearrange starts from this saved policy (e.g. a fixed-order run's "
                                        "<learner>/policy folder) instead of fresh weights"},
    )
    greedy_rearrangement: bool = field(
        default=False, metadata={"help": "rearrange targets from the greedy chain instead of a sampled one"},
    )
    val_fraction: float = field(default=0.1, metadata={"help": "share of train held out for validation"})
    eval_every: int = field(default=50, metadata={"help": "validate every this many updates"})
    select_metric: str = field(default="nDCG@3", metadata={"help": "validation metric choosing the best policy"})
    checkpoint_every: int = field(default=100, metadata={"help": "write checkpoint.pt every this many updates"})
    ensemble: list[str] = field(
        default_factory=lambda: ["rearrange", "combined"],
        metadata={"help": "learners whose best policies are ensembled (those trained in this run)"},
    )
    seed: int = 0
    runs_dir: str = "runs"
    group_name: str | None = field(default=None, metadata={"help": "run-name group instead of learner names"})
    resume: str | None = field(default=None, metadata={"help": "run folder to continue (its config.json wins)"})
    stop_after_updates: int | None = field(
        default=None, metadata={"help": "stop (checkpointed, resumable) after this many updates in this call"}
    )
    quick: bool = field(default=False, metadata={"help": "smoke test: 40 updates per learner, eval every 20"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})


class ArgsError(ValueError):
    """Bad command line or run folder: reported as one line, without a traceback."""


# ----------------------------------------------------------------------------- arguments
def resolve_args(args: Args) -> Args:
    """Apply --resume (saved config wins) and --quick, then check every field; returns a copy."""
    args = copy.deepcopy(args)
    if args.resume is not None:
        config_path = Path(args.resume) / CONFIG_FILE
        if not config_path.is_file():
            raise ArgsError(f"--resume {args.resume}: no {CONFIG_FILE} there (is it a run folder?)")
        try:
            saved = json.loads(config_path.read_text())["args"]
            known = {f.name for f in fields(Args)}
            unknown = sorted(set(saved) - known)
            if unknown:
                raise ArgsError(f"{config_path}: unknown Args fields {unknown}")
            args = Args(**{**saved, "resume": args.resume, "stop_after_updates": args.stop_after_updates,
                           "progress": args.progress})
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ArgsError(f"{config_path}: not a train_rl config ({type(error).__name__}: {error})") from None
    if args.quick:
        args.updates, args.eval_every, args.checkpoint_every = min(args.updates, 40), 20, 20
    _check(args)
    return args


def _check(args: Args) -> None:
    bad = [name for name in args.learners if name not in LEARNERS]
    if bad or not args.learners or len(set(args.learners)) != len(args.learners):
        raise ArgsError(f"--learners must be distinct names from {LEARNERS}, got {args.learners}")
    if any(name not in LEARNERS for name in args.ensemble):
        raise ArgsError(f"--ensemble must name learners from {LEARNERS}, got {args.ensemble}")
    for name, value in (("updates", args.updates), ("batch-size", args.batch_size),
                        ("hidden-size", args.hidden_size), ("eval-every", args.eval_every),
                        ("checkpoint-every", args.checkpoint_every)):
        if value < 1:
            raise ArgsError(f"--{name} must be >= 1, got {value}")
    if args.select_metric not in RANKING_NAMES + SET_NAMES:
        raise ArgsError(f"--select-metric must be one of {RANKING_NAMES + SET_NAMES}, got {args.select_metric!r}")
    if not 0.0 < args.val_fraction < 1.0:
        raise ArgsError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if not 0.0 <= args.dropout < 1.0:
        raise ArgsError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.stop_after_updates is not None and args.stop_after_updates < 1:
        raise ArgsError(f"--stop-after-updates must be >= 1, got {args.stop_after_updates}")
    for flag, source in external_sources(args).items():
        if not Path(source).exists():
            raise ArgsError(f"--{flag} {source}: no such file or folder")
    try:
        learner_config(args).check()
        learner_config(args, name="combined").check()
    except ValueError as error:
        raise ArgsError(str(error)) from None


def learner_config(args: Args, max_steps: int | None = None, name: str = "") -> LearnerConfig:
    lr = args.lr
    if name in RL_LEARNERS and args.rl_lr is not None:
        lr = args.rl_lr
    if name == "ppo" and args.ppo_lr is not None:
        lr = args.ppo_lr
    return LearnerConfig(
        lr=lr, batch_size=args.batch_size, seed=args.seed, reward=args.reward,
        reward_mode=args.reward_mode, baseline=args.baseline, entropy_coef=args.entropy_coef,
        rl_weight=args.rl_weight, max_steps=max_steps, ppo_epochs=args.ppo_epochs,
        ppo_minibatches=args.ppo_minibatches, greedy_rearrangement=args.greedy_rearrangement,
    )


def learner_order(args: Args) -> list[str]:
    """Training order: with --warm-start rearrange, rearrangement runs before the RL learners."""
    if args.warm_start == "rearrange" and "rearrange" in args.learners:
        return [n for n in args.learners if n not in RL_LEARNERS] + [n for n in args.learners if n in RL_LEARNERS]
    return list(args.learners)


def external_sources(args: Args) -> dict[str, str]:
    """Saved policies this run starts learners from, by flag (only those some learner uses)."""
    sources = {}
    if args.warm_start not in (None, "rearrange") and any(n in RL_LEARNERS for n in args.learners):
        sources["warm-start"] = args.warm_start
    if args.rearrange_warm_start is not None and "rearrange" in args.learners:
        sources["rearrange-warm-start"] = args.rearrange_warm_start
    return sources


def warm_start_source(args: Args, name: str, run_dir: Path) -> Path | None:
    """Where learner `name` starts from: None = fresh weights."""
    if name == "rearrange" and args.rearrange_warm_start is not None:
        return Path(args.rearrange_warm_start)
    if name not in RL_LEARNERS or args.warm_start is None:
        return None
    if args.warm_start == "rearrange":
        return run_dir / "rearrange" / POLICY_DIR if "rearrange" in args.learners else None
    return Path(args.warm_start)


def group_label(args: Args) -> str:
    if args.group_name:
        return args.group_name
    joined = "+".join(args.learners)
    return joined if len(joined) <= 40 else f"{len(args.learners)}learners"


# ----------------------------------------------------------------------------- data and policies
@dataclass
class RunData:
    """The splits every learner sees: train minus validation, validation, test."""

    train: Split
    val: Split
    test: Split
    label_freq: np.ndarray
    max_steps: int


def load_run_data(args: Args) -> RunData:
    try:
        dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    except (DataNotFoundError, DataFormatError):
        raise
    except ValueError as error:  # unknown name
        raise ArgsError(f"--dataset {args.dataset}: {error}") from None
    train, val = carve_validation(dataset.train, args.val_fraction, args.seed)
    max_steps = default_max_steps(train.max_labels_per_doc, dataset.n_labels)
    return RunData(train, val, dataset.test, train.label_freq, max_steps)


def check_warm_start(args: Args, data: RunData) -> None:
    """Load each external warm-start policy once, before any training, so a bad path fails early."""
    shape = (int(data.train.X.shape[1]), int(data.train.Y.shape[1]))
    for flag, source in external_sources(args).items():
        try:
            policy = load_policy(source)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ArgsError(f"--{flag} {source}: {error}") from None
        if (policy.n_features, policy.n_labels) != shape:
            raise ArgsError(f"--{flag} {source}: policy is {policy.n_features} features x "
                            f"{policy.n_labels} labels, {args.dataset} has {shape[0]} x {shape[1]}")


# ----------------------------------------------------------------------------- one learner
def train_learner(name: str, args: Args, data: RunData, run_dir: Path, interrupt: GracefulInterrupt,
                  budget: list[int | None]) -> bool:
    """Train (or continue) learner `name`; True when it finished its budget, False when stopped early.

    `budget` is a one-element list with the updates this call may still run (None = unlimited),
    shared across learners so --stop-after-updates counts updates of the whole call.
    """
    learner_dir = run_dir / name
    checkpoint_path = learner_dir / CHECKPOINT_FILE
    state = load_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    if state is not None and state["finished"]:
        if not (learner_dir / POLICY_DIR).is_dir():  # stopped between the last checkpoint and the save
            policy_from_state(state["policy_config"], state["best_policy"]).save(learner_dir / POLICY_DIR)
        return True
    if interrupt.requested or (budget[0] is not None and budget[0] <= 0):
        return False
    torch.manual_seed(args.seed)
    if state is not None:
        policy = policy_from_state(state["policy_config"])
    else:
        source = warm_start_source(args, name, run_dir)
        if source is not None:
            policy = load_policy(source)
        else:
            policy = ChainPolicy(data.train.X.shape[1], data.train.Y.shape[1], hidden_size=args.hidden_size,
                                 dropout=args.dropout)
            policy.fit_input_normalization(data.train.X)
    learner = make_learner(name, policy, data.train, learner_config(args, data.max_steps, name), label_freq=data.label_freq)
    sampler = BatchSampler(len(data.train), args.batch_size, args.seed)
    progress = {"update": 0, "best_update": -1, "best_score": None, "best_metrics": {}, "return_ema": None,
                "label_steps": 0.0, "docs": 0, "train_seconds": 0.0, "eval_seconds": 0.0}
    best_policy = copy.deepcopy(policy.state_dict())
    if state is not None:
        learner.load_state_dict(state["learner"])
        sampler.load_state_dict(state["sampler"])
        progress, best_policy = state["progress"], state["best_policy"]
    writer = open_writer(learner_dir, purge_step=progress["update"] + 1 if state is not None else None)
    last_val: dict[str, float] = dict(progress["best_metrics"])  # what the next grid report says

    def validate() -> None:
        started = time.perf_counter()
        metrics = validation_metrics(policy, data.val, PREDICT_BATCH, data.max_steps)
        last_val.update(metrics)
        for key, value in metrics.items():
            writer.add_scalar(f"eval/{key}", value, progress["update"])
        # Step 0 is only a reference point: a warm-started learner must not win with its starting policy.
        score = metrics[args.select_metric]
        if progress["update"] > 0 and is_better(args.select_metric, score, progress["best_score"]):
            progress.update(best_update=progress["update"], best_score=score, best_metrics=metrics)
            best_policy.update(copy.deepcopy(policy.state_dict()))
        progress["eval_seconds"] += time.perf_counter() - started

    def checkpoint(finished: bool) -> None:
        save_checkpoint(checkpoint_path, {
            "learner_name": name, "finished": finished, "policy_config": policy.config,
            "learner": learner.state_dict(), "sampler": sampler.state_dict(),
            "progress": progress, "best_policy": best_policy,
        })

    if state is None:
        writer.add_text("hyperparameters", hparams_markdown({"learner": name, **asdict(args)}))
        validate()  # step 0: the starting point (matters for warm-started learners)
    bar = tqdm(total=args.updates, initial=progress["update"], desc=name, unit="upd", disable=not args.progress)
    session_start, session_steps, session_docs = time.perf_counter(), 0.0, 0
    stopped = False
    try:
        while progress["update"] < args.updates:
            rows = sampler.next()
            started = time.perf_counter()
            scalars = learner.update(rows)
            progress["train_seconds"] += time.perf_counter() - started
            progress["update"] += 1
            step = progress["update"]
            label_steps = float(scalars.get("charts/label_steps", 0.0))
            progress["label_steps"] += label_steps
            progress["docs"] += len(rows)
            session_steps, session_docs = session_steps + label_steps, session_docs + len(rows)
            for key, value in scalars.items():
                writer.add_scalar(key, value, step)
            elapsed = max(time.perf_counter() - session_start, 1e-9)
            writer.add_scalar("perf/steps_per_sec", session_steps / elapsed, step)
            writer.add_scalar("perf/docs_per_sec", session_docs / elapsed, step)
            episodic = scalars.get("charts/episodic_return")
            if episodic is not None:
                ema = progress["return_ema"]
                progress["return_ema"] = episodic if ema is None else 0.9 * ema + 0.1 * episodic
            validated = step % args.eval_every == 0 or step == args.updates
            if validated:
                validate()
            if budget[0] is not None:
                budget[0] -= 1
            stopped = interrupt.requested or (budget[0] is not None and budget[0] <= 0)
            checkpointed = step == args.updates or stopped or step % args.checkpoint_every == 0
            if checkpointed:
                checkpoint(finished=step == args.updates)
            if validated or checkpointed:  # a grid's progress line / Ray Tune (checkpoint handed over)
                execution.report({"learner": name, "update": step, **{f"val/{k}": v for k, v in last_val.items()}},
                                 run_dir if checkpointed else None)
            bar.update(1)
            bar.set_postfix(ret=f"{progress['return_ema'] or 0.0:.3f}",
                            best=f"{progress['best_score'] or 0.0:.3f}")
            if stopped and step < args.updates:
                return False
    finally:
        bar.close()
        writer.close()
    policy_from_state(policy.config, best_policy).save(learner_dir / POLICY_DIR)
    return True


# ----------------------------------------------------------------------------- main
def main(args: Args) -> Path:
    """Train every learner (resuming where a previous call stopped), evaluate, write metrics.json."""
    single_thread()
    args = resolve_args(args)
    started = time.perf_counter()
    data = load_run_data(args)
    check_warm_start(args, data)
    if args.resume is not None:
        run_dir = Path(args.resume)
    else:
        run_dir = create_run_dir(args.runs_dir, run_name(args.dataset, group_label(args), args.seed))
        derived = {
            "run_dir": str(run_dir), "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "n_labels": int(data.train.Y.shape[1]), "n_features": int(data.train.X.shape[1]),
            "max_steps": data.max_steps, "learner_order": learner_order(args),
            "warm_start": {n: str(warm_start_source(args, n, run_dir)) for n in args.learners
                           if warm_start_source(args, n, run_dir) is not None},
            "learner_config": {n: asdict(learner_config(args, data.max_steps, n)) for n in args.learners},
            "torch": torch.__version__, "command": sys.argv,
        }
        atomic_write_json(run_dir / CONFIG_FILE, {"args": asdict(args), "derived": derived})
    budget = [args.stop_after_updates]
    with GracefulInterrupt() as interrupt:
        for name in learner_order(args):
            if not train_learner(name, args, data, run_dir, interrupt, budget):
                print(f"\nstopped before {name} finished (checkpoints in {run_dir}/<learner>/{CHECKPOINT_FILE})\n"
                      f"resume with: python experiments/train_rl.py --resume {run_dir}")
                return run_dir
    report = final_evaluation(args, data, run_dir)
    report["timing"] = {"this_call_seconds": time.perf_counter() - started}
    atomic_write_json(run_dir / METRICS_FILE, report)
    print(results_table(report))
    print(f"\nrun folder: {run_dir}\ncurves:     tensorboard --logdir {Path(args.runs_dir if args.resume is None else run_dir.parent)}")
    return run_dir


if __name__ == "__main__":
    try:
        finished_run = main(parse_args(Args))
    except (ArgsError, DataNotFoundError, DataFormatError) as error:
        sys.exit(f"error: {error}")
    sys.exit(0 if (finished_run / METRICS_FILE).exists() else 130)  # 130: stopped early, resumable

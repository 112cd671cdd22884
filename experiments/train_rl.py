"""Train label-chain policies with several learners on one dataset and compare them on test.

    python experiments/train_rl.py                      # bibtex: 4 fixed orderings, rearrange, combined
    python experiments/train_rl.py --dataset emotions --learners rearrange ppo --updates 300
    python experiments/train_rl.py --resume runs/bibtex__6learners__0__1700000000
    python experiments/train_rl.py --config best_config.json --seed 1   # JSON of Args fields; flags win
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

import argparse
import copy
import errno
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from agents.learners import FIXED_ORDERINGS, LEARNERS, LearnerConfig, make_learner
from agents.policy import ChainPolicy
from envs.data.errors import DataFormatError, DataNotFoundError
from experiments.common import (
    args_from_json,
    atomic_write_json,
    flag_name,
    parse_args,
    resolve_device,
    single_thread,
)
from experiments.config import ArgsError, TrainKnobs, check_args
from experiments.learner_run import (
    LearnerRun,
    RunData,
    Schedule,
    UpdateBudget,
    checkpoint_path,
    finish_saved_learner,
)
from experiments.presets import PRESETS
from experiments.run_setup import fresh_policy, load_run_data
from experiments.run_report import final_evaluation, results_table
from experiments.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    POLICY_DIR,
    BatchSampler,
    DiskFullError,
    GracefulInterrupt,
    RunLock,
    check_writable_folder,
    create_run_dir,
    load_checkpoint,
    load_policy,
    policy_from_state,
    run_name,
    run_name_part,
)

RL_LEARNERS = ("reinforce", "ppo", "combined")
# Flags a --resume may change: they say how to show or where to find things, not what the run is.
SAFE_ON_RESUME = ("resume", "progress", "stop_after_updates", "data_dir", "device")
__all__ = ["Args", "ArgsError", "main"]


@dataclass
class Args(TrainKnobs):
    """Train label-chain policies (fixed orderings, rearrangement, RL) and compare them on test."""

    dataset: str = field(default="bibtex", metadata={"help": "dataset name or folder (see envs.data.loading)"})
    learners: list[str] = field(
        default_factory=lambda: [*FIXED_ORDERINGS, "rearrange", "combined"],
        metadata={"help": f"learners to train, from {LEARNERS}"},
    )
    warm_start: str | None = field(
        default="rearrange",
        metadata={
            "help": "RL learners start from: 'rearrange' (this run's rearrangement policy, if "
            "trained), a saved policy folder / checkpoint.pt / learner folder, or none"
        },
    )
    rearrange_warm_start: str | None = field(
        default=None,
        metadata={
            "help": "rearrange starts from this saved policy (e.g. a fixed-order run's "
            "<learner>/policy folder) instead of fresh weights"
        },
    )
    ensemble: list[str] = field(
        default_factory=lambda: ["rearrange", "combined"],
        metadata={"help": "learners whose best policies are ensembled (those trained in this run)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the validation split, weights and sampling", "at_least": 0})
    runs_dir: str = field(default="runs", metadata={"help": "new run folders go here"})
    group_name: str | None = field(default=None, metadata={"help": "run-name group instead of learner names"})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "run folder to continue with its saved "
            "configuration (only --progress, --stop-after-updates "
            "and --data-dir may be given with it)"
        },
    )
    stop_after_updates: int | None = field(
        default=None,
        metadata={"help": "stop (checkpointed, resumable) after this many updates in this call", "at_least": 1},
    )
    quick: bool = field(default=False, metadata={"help": "smoke test: 40 updates per learner, eval every 20"})
    config: str | None = field(
        default=None,
        metadata={
            "help": "JSON file of these Args fields (e.g. tune.py's best_config.json) used as "
            "defaults: flags given on the command line win over it"
        },
    )


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
            resumed = Args(**{**saved, **{name: getattr(args, name) for name in SAFE_ON_RESUME}})
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ArgsError(f"{config_path}: not a train_rl config ({type(error).__name__}: {error})") from None
        conflicts = resume_conflicts(args, resumed)
        if conflicts:
            raise ArgsError(
                f"--resume {args.resume}: the run was made with other values of {', '.join(conflicts)}; "
                f"a resumed run keeps its saved configuration ({config_path}). Only "
                f"{', '.join(flag_name(n) for n in SAFE_ON_RESUME if n != 'resume')} may change; "
                "start a new run for other settings"
            )
        args = resumed
    apply_preset(args)  # idempotent on resume: the saved knobs already hold the preset's values
    if args.quick:
        args.updates, args.eval_every, args.checkpoint_every = min(args.updates, 40), 20, 20
    _check(args)
    return args


def apply_preset(args: Args) -> None:
    """--preset: its values for the knobs still at this script's defaults (explicit flags win)."""
    if args.preset not in PRESETS:
        return  # none, or a bad name that _check reports
    preset, defaults = PRESETS[args.preset], type(args)()
    for knob in (
        "hidden_size",
        "dropout",
        "lr",
        "rl_lr",
        "weight_decay",
        "patience",
        "updates",
        "eval_every",
        "batch_size",
    ):
        if getattr(args, knob) == getattr(defaults, knob):
            setattr(args, knob, getattr(preset, knob))


def resume_conflicts(given: Args, saved: Args) -> list[str]:
    """Flags given with --resume (not at their default) whose value differs from the saved run's.

    A flag left at its default cannot be told apart from one not given, so it is taken from the run.
    """
    defaults = Args()
    conflicts = []
    for spec in fields(Args):
        name = spec.name
        if name in SAFE_ON_RESUME or name == "runs_dir":  # runs_dir: unused on resume (the folder is given)
            continue
        value = getattr(given, name)
        if value != getattr(defaults, name) and value != getattr(saved, name):
            conflicts.append(f"{flag_name(name)} (run: {getattr(saved, name)!r}, given: {value!r})")
    return conflicts


def _check(args: Args) -> None:
    bad = [name for name in args.learners if name not in LEARNERS]
    if bad or not args.learners or len(set(args.learners)) != len(args.learners):
        raise ArgsError(f"--learners must be distinct names from {LEARNERS}, got {args.learners}")
    if any(name not in LEARNERS for name in args.ensemble):
        raise ArgsError(f"--ensemble must name learners from {LEARNERS}, got {args.ensemble}")
    problems = check_args(args)
    if problems:
        raise ArgsError("; ".join(problems))
    if args.group_name is not None and (not args.group_name or "__" in args.group_name or "/" in args.group_name):
        raise ArgsError(f"--group-name {args.group_name!r} cannot be part of a run name (empty, '__' or '/')")
    if not run_name_part(args.dataset):
        raise ArgsError(f"--dataset {args.dataset!r}: give a dataset name or a folder")
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
        lr=lr,
        batch_size=args.batch_size,
        seed=args.seed,
        reward=args.reward,
        reward_mode=args.reward_mode,
        baseline=args.baseline,
        entropy_coef=args.entropy_coef,
        rl_weight=args.rl_weight,
        max_steps=max_steps,
        ppo_epochs=args.ppo_epochs,
        ppo_minibatches=args.ppo_minibatches,
        greedy_rearrangement=args.greedy_rearrangement,
        weight_decay=args.weight_decay,
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
def check_warm_start(args: Args, data: RunData) -> None:
    """Load each external warm-start policy once, before any training, so a bad path fails early."""
    shape = (data.n_features, data.n_labels)
    for flag, source in external_sources(args).items():
        try:
            policy = load_policy(source)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ArgsError(f"--{flag} {source}: {error}") from None
        if shape[0] not in policy.feature_widths or policy.n_labels != shape[1]:
            raise ArgsError(
                f"--{flag} {source}: policy is {policy.n_features} features x "
                f"{policy.n_labels} labels, {args.dataset} has {shape[0]} x {shape[1]}"
            )
        if policy.output.kind != args.output:
            raise ArgsError(
                f"--{flag} {source}: policy has a {policy.output.kind} output layer, "
                f"this run asks for --output {args.output}"
            )


# ----------------------------------------------------------------------------- one learner
def schedule(args: Args) -> Schedule:
    set_metric = "example_f1" if args.preset is not None and args.select_metric != "example_f1" else None
    return Schedule(
        args.updates,
        args.eval_every,
        args.checkpoint_every,
        args.select_metric,
        args.progress,
        patience=args.patience,
        set_metric=set_metric,
    )


def start_policy(name: str, args: Args, data: RunData, run_dir: Path) -> ChainPolicy:
    """Learner `name`'s starting weights: its warm start, or fresh ones normalised on train."""
    source = warm_start_source(args, name, run_dir)
    device = resolve_device(args.device)
    if source is not None:
        return load_policy(source).to(device)
    return fresh_policy(args, data.train, n_features=data.n_features, mcg=data.mcg).to(device)


def train_learner(
    name: str, args: Args, data: RunData, run_dir: Path, interrupt: GracefulInterrupt, budget: UpdateBudget
) -> bool:
    """Train (or continue) learner `name`; True when it finished its budget, False when stopped early."""
    learner_dir = run_dir / name
    path = checkpoint_path(learner_dir)
    state = load_checkpoint(path) if path.exists() else None
    if state is not None and state["finished"]:
        finish_saved_learner(learner_dir, state)
        return True
    if interrupt.requested or budget.exhausted:
        return False
    torch.manual_seed(args.seed)
    if state is not None:
        policy = policy_from_state(state["policy_config"]).to(resolve_device(args.device))
    else:
        policy = start_policy(name, args, data, run_dir)
    learner = make_learner(
        name, policy, data.train, learner_config(args, data.max_steps, name), label_freq=data.label_freq
    )
    sampler = BatchSampler(len(data.train), args.batch_size, args.seed)
    run = LearnerRun(
        name,
        learner,
        sampler,
        data,
        schedule(args),
        learner_dir,
        hparams={"learner": name, **asdict(args)},
        state=state,
    )
    return run.train(interrupt, budget)


# ----------------------------------------------------------------------------- main
def main(args: Args) -> Path:
    """Train every learner (resuming where a previous call stopped), evaluate, write metrics.json."""
    single_thread()
    args = resolve_args(args)
    started = time.perf_counter()
    with ExitStack() as stack:
        if args.resume is not None:  # checked and locked before the data is loaded: fail fast
            run_dir = Path(args.resume)
            check_writable_folder(run_dir, "--resume", create=False)
            stack.enter_context(RunLock(run_dir))
            data = load_run_data(args)
            check_warm_start(args, data)
        else:
            check_writable_folder(args.runs_dir, "--runs-dir", create=True)
            data = load_run_data(args)
            check_warm_start(args, data)
            run_dir = create_run_dir(args.runs_dir, run_name(run_name_part(args.dataset), group_label(args), args.seed))
            stack.enter_context(RunLock(run_dir))
        try:
            return train_and_report(args, data, run_dir, started)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            where = str(error) if isinstance(error, DiskFullError) else f"the disk is full (ENOSPC) in {run_dir}"
            raise DiskFullError(
                errno.ENOSPC,
                f"{where}; free some space, then resume with: python experiments/train_rl.py --resume {run_dir}",
            ) from None


def train_and_report(args: Args, data: RunData, run_dir: Path, started: float) -> Path:
    """The body of `main` once the run folder is chosen and locked."""
    if args.resume is None:
        derived = {
            "run_dir": str(run_dir),
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_test": len(data.test),
            "n_labels": data.n_labels,
            "n_features": data.n_features,
            "max_steps": data.max_steps,
            "learner_order": learner_order(args),
            "warm_start": {
                n: str(warm_start_source(args, n, run_dir))
                for n in args.learners
                if warm_start_source(args, n, run_dir) is not None
            },
            "learner_config": {n: asdict(learner_config(args, data.max_steps, n)) for n in args.learners},
            "torch": torch.__version__,
            "command": sys.argv,
        }
        atomic_write_json(run_dir / CONFIG_FILE, {"args": asdict(args), "derived": derived})
    budget = UpdateBudget(args.stop_after_updates)
    with GracefulInterrupt() as interrupt:
        for name in learner_order(args):
            if not train_learner(name, args, data, run_dir, interrupt, budget):
                print(
                    f"\nstopped before {name} finished (checkpoints in {run_dir}/<learner>/{CHECKPOINT_FILE})\n"
                    f"resume with: python experiments/train_rl.py --resume {run_dir}",
                    flush=True,
                )
                return run_dir
    report = final_evaluation(data, run_dir, args.dataset, args.learners, args.ensemble, args.select_metric)
    report["timing"] = {"this_call_seconds": time.perf_counter() - started}
    atomic_write_json(run_dir / METRICS_FILE, report)
    print(results_table(report))
    print(
        f"\nrun folder: {run_dir}\ncurves:     tensorboard --logdir {Path(args.runs_dir if args.resume is None else run_dir.parent)}"
    )
    return run_dir


def cli_args(argv: list[str] | None = None) -> Args:
    """The command line's Args, on top of the --config file's fields when one is given."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    if config is None:
        return parse_args(Args, argv)
    try:
        defaults = args_from_json(Args, config)
    except ValueError as error:
        raise ArgsError(str(error)) from None
    return parse_args(Args, argv, defaults=replace(defaults, config=config))


if __name__ == "__main__":
    try:
        finished_run = main(cli_args())
    except (ArgsError, DiskFullError, DataNotFoundError, DataFormatError) as error:
        sys.exit(f"error: {error}")
    sys.exit(0 if (finished_run / METRICS_FILE).exists() else 130)  # 130: stopped early, resumable

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
`--group-name`). Inside: `config.json` (Args + derived values), `metrics.json`, `predictions/` (each
learner's, best_fixed's, the ensemble's and the floor's test predictions: envs.predictions), and one subfolder
per learner with its TensorBoard events, `checkpoint.pt` and `policy/` (best-on-validation weights,
loadable with `ChainPolicy.load`). One event folder per learner means TensorBoard overlays the
learners' curves under the same tags: `charts/episodic_return`, `losses/*`, `eval/*` (validation),
`perf/steps_per_sec` (label-steps/s of training) and `perf/docs_per_sec`.
"""

from __future__ import annotations

import errno
import json
import shlex
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from labelchain.agents.learners import make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.experiments.run.common import atomic_write_json, resolve_device
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.learner_run import (
    LearnerRun,
    RunData,
    Schedule,
    UpdateBudget,
    checkpoint_path,
    finish_saved_learner,
)
from labelchain.experiments.run.report import final_evaluation, results_table
from labelchain.experiments.run.setup import fresh_policy, load_run_data
from labelchain.experiments.run.identity import check_checkpoint_run, check_same_data, run_stamp
from labelchain.experiments.run.folder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    BatchSampler,
    CheckpointError,
    DiskFullError,
    GracefulInterrupt,
    RunAborted,
    RunLock,
    check_writable_folder,
    create_run_dir,
    disk_is_full,
    load_checkpoint,
    load_policy,
    policy_from_state,
    quiet_disk_full_in_threads,
    run_name,
    run_name_part,
    run_script,
)
from labelchain.experiments.run.train_rl_args import (
    Args,
    check_warm_start,
    cli_args,
    group_label,
    learner_config,
    learner_order,
    resolve_args,
    warm_start_source,
)
from labelchain.experiments.run.threads import set_threads

# The script's public names: `main` and its `Args` (defined in train_rl_args; the README documents
# `from experiments.train_rl import Args`, one Args per script). Everything else: import it from where
# it is defined (experiments.run.train_rl_args, experiments.run.config).
__all__ = ["Args", "main"]


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
    name: str,
    args: Args,
    data: RunData,
    run_dir: Path,
    interrupt: GracefulInterrupt,
    budget: UpdateBudget,
    stamp: dict[str, Any] | None = None,
) -> bool:
    """Train (or continue) learner `name`; True when it finished its budget, False when stopped early."""
    learner_dir = run_dir / name
    path = checkpoint_path(learner_dir)
    state = load_checkpoint(path) if path.exists() else None
    if state is not None and stamp is not None:
        check_checkpoint_run(path, state, stamp)
    if state is not None and state["finished"]:
        finish_saved_learner(learner_dir, state)
        return True
    if interrupt.requested or budget.exhausted:
        return False
    torch.manual_seed(args.seed)
    try:
        if state is not None:
            policy = policy_from_state(state["policy_config"]).to(resolve_device(args.device))
            check_same_mcg(policy, data, learner_dir)
        else:
            policy = start_policy(name, args, data, run_dir)
    except (RuntimeError, MemoryError) as error:  # e.g. --hidden-size 1e12: no memory for the weights
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ArgsError(f"{name}: cannot build its policy (--hidden-size {args.hidden_size}: {detail})") from None
    learner = make_learner(
        name, policy, data.train, learner_config(args, data.max_steps, name), label_freq=data.label_freq
    )
    sampler = BatchSampler(len(data.train), args.batch_size, args.seed)
    try:
        run = LearnerRun(
            name,
            learner,
            sampler,
            data,
            schedule(args),
            learner_dir,
            hparams={"learner": name, **asdict(args)},
            state=state,
            stamp=stamp,
        )
    except (ValueError, RuntimeError, KeyError, TypeError) as error:
        if state is None:
            raise
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise CheckpointError(f"{path}: does not fit this run ({detail}); delete it to restart {name}") from None
    return run.train(interrupt, budget)


def check_same_mcg(policy: ChainPolicy, data: RunData, learner_dir: Path) -> None:
    """A resumed MCG learner must train on the clusters its checkpoint was trained on.

    Why: the run rebuilds its clusters from the flags (k-means, or the --overlap-from policy as it is
    now), while the checkpoint's policy keeps the membership it started with; if those differ, the gold
    cluster tokens would silently stop matching the policy's constraint."""
    saved = None if policy.mcg is None else policy.mcg.config()
    rebuilt = None if data.mcg is None else data.mcg.config()
    if saved != rebuilt:
        raise ArgsError(
            f"--resume: {learner_dir.name}'s checkpoint was trained on other --guidance mcg clusters than the "
            "ones rebuilt now (did the --overlap-from policy change?); start a new run instead"
        )


# ----------------------------------------------------------------------------- main
def main(args: Args) -> Path:
    """Train every learner (resuming where a previous call stopped), evaluate, write metrics.json."""
    set_threads(args.threads)
    args = resolve_args(args)
    started = time.perf_counter()
    with ExitStack() as stack:
        stack.enter_context(quiet_disk_full_in_threads())
        if args.resume is not None:  # checked and locked before the data is loaded: fail fast
            run_dir = Path(args.resume)
            check_writable_folder(run_dir, "--resume", create=False)
            stack.enter_context(RunLock(run_dir))
            data = load_run_data(args)
            derived = saved_derived(run_dir)
            check_same_data(run_dir, derived.get("data"), data.identity or {})
            check_warm_start(args, data)
            stamp = run_stamp(str(derived.get("run_id", run_dir.name)), args.seed, data.identity)
        else:
            check_writable_folder(args.runs_dir, "--runs-dir", create=True)
            data = load_run_data(args)
            check_warm_start(args, data)
            run_dir = create_run_dir(args.runs_dir, run_name(run_name_part(args.dataset), group_label(args), args.seed))
            stack.enter_context(RunLock(run_dir))
            stamp = run_stamp(run_dir.name, args.seed, data.identity)
        resume_hint = resume_command(run_dir)
        try:
            return train_and_report(args, data, run_dir, started, stamp)
        except KeyboardInterrupt:  # a second Ctrl-C: the last complete checkpoint stays (atomic writes)
            raise RunAborted(f"aborted; the last complete checkpoints are kept; {resume_hint}") from None
        except (OSError, RuntimeError) as error:
            if isinstance(error, PermissionError) or (isinstance(error, OSError) and error.errno == errno.EROFS):
                # a shared run folder whose files are someone else's, or a read-only mount (issue 19)
                where = error.filename or run_dir
                raise ArgsError(
                    f"cannot write {where} ({error.strerror}); make the run folder writable, then {resume_hint}"
                ) from None
            if not disk_is_full(error, run_dir):
                raise
            where = str(error) if isinstance(error, DiskFullError) else f"the disk is full (ENOSPC) in {run_dir}"
            raise DiskFullError(errno.ENOSPC, f"{where}; free some space, then {resume_hint}") from None


def saved_derived(run_dir: Path) -> dict[str, Any]:
    """The derived values a run recorded in its config.json (resolve_args has checked the file)."""
    derived = json.loads((run_dir / CONFIG_FILE).read_text()).get("derived")
    return derived if isinstance(derived, dict) else {}


def train_and_report(args: Args, data: RunData, run_dir: Path, started: float, stamp: dict[str, Any]) -> Path:
    """The body of `main` once the run folder is chosen and locked."""
    if args.resume is None:
        derived = {
            "run_dir": str(run_dir),
            "run_id": stamp["run_id"],
            "data": data.identity,
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
            if not train_learner(name, args, data, run_dir, interrupt, budget, stamp):
                print(
                    f"\nstopped before {name} finished (checkpoints in {run_dir}/<learner>/{CHECKPOINT_FILE})\n"
                    f"{resume_command(run_dir)}",
                    flush=True,
                )
                return run_dir
    report = final_evaluation(
        data, run_dir, args.dataset, args.learners, args.ensemble, args.select_metric, args.seed, args.predictions_k
    )
    report["timing"] = {"this_call_seconds": time.perf_counter() - started}
    atomic_write_json(run_dir / METRICS_FILE, report)
    print(results_table(report))
    logdir = Path(args.runs_dir if args.resume is None else run_dir.parent)
    print(f"\nrun folder: {run_dir}\ncurves:     {shlex.join(['tensorboard', '--logdir', str(logdir)])}")
    return run_dir


def resume_command(run_dir: Path) -> str:
    """The line that says how to continue a run (shell-quoted: paths with spaces or `;` paste safely)."""
    return "resume with: " + shlex.join(["python", "experiments/train_rl.py", "--resume", str(run_dir)])


if __name__ == "__main__":
    finished_run = run_script(lambda: main(cli_args()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # all saved: a late Ctrl-C must not end a clean exit in a traceback
    sys.exit(0 if (finished_run / METRICS_FILE).exists() else 130)  # 130: stopped early, resumable

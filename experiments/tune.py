"""Hyperparameter search for one learner on one dataset with Ray Tune, ASHA stopping weak trials early.

    python experiments/tune.py --dataset bibtex --learner combined --samples 16
    python experiments/tune.py --dataset emotions --learner rearrange --samples 4 --updates 60 --eval-every 10
    python experiments/tune.py ... --address auto        # on a running Ray cluster
    python experiments/train_rl.py --config runs/tune/<search>/best_config.json   # train the winner

Each trial is one `train_rl` run (its own run folder under --runs-dir, TensorBoard curves, checkpoints)
with a configuration drawn from SEARCH_SPACE. An RL learner (reinforce, ppo, combined) trains in its
trial after the trial's own rearrangement warm start (train_rl's default `--warm-start rearrange`), so
the warm start has the trial's hidden size and dropout; only the tuned learner's validation steps are
reported to Tune, one report per validation step, and ASHA (time = validation steps) compares trials
on validation `--select-metric` at the same step. The searched learning rate is the tuned learner's: `--lr`
for a supervised learner, `--rl-lr` for reinforce and combined, `--ppo-lr` for ppo. A killed trial
restarts from its last checkpoint, as in the grids (experiments/grid/ray_backend.py).

The best trial (best validation score at any step: train_rl keeps its best-on-validation policy) is
written as `best_config.json`, a JSON of train_rl Args fields that `train_rl.py --config` accepts;
`trials.json` lists every trial's configuration, best score and validation steps reported; the
trials' run folders are next to it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from labelchain.agents.config import DEFAULTS as D
from labelchain.agents.learner_base import RL_LEARNERS
from labelchain.agents.learners import LEARNERS
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.metrics import LOWER_IS_BETTER
from labelchain.experiments.grid import execution, ray_backend
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.common import Renames, atomic_write_json, parse_args
from labelchain.experiments.run.config import ArgsError, override
from labelchain.experiments.grid.lookup import run_config, train_or_resume
from labelchain.experiments.run.reporting import reporting_to
from labelchain.experiments.run.threads import Threads, cell_threads

BEST_CONFIG_FILE = "best_config.json"


def search_space(learner: str) -> dict[str, Any]:
    """What is searched (Tune sampling domains); the RL knobs only for the learners that read them."""
    from ray import tune

    space = {
        "lr": tune.loguniform(1e-4, 3e-3),
        "hidden_size": tune.choice([64, 128, 256]),
        "dropout": tune.uniform(0.0, 0.5),
    }
    if learner in RL_LEARNERS:
        space["entropy_coef"] = tune.uniform(0.0, 0.05)
    if learner == "combined":
        space["rl_weight"] = tune.uniform(0.5, 1.0)
    return space


@dataclass
class Args(Threads):
    """Ray Tune search (ASHA) over one learner's learning rate, size, dropout, RL weight, entropy bonus."""

    RENAMED: ClassVar[Renames] = {"metric": "select_metric"}  # before issue 20's one flag vocabulary

    dataset: str = field(default="bibtex", metadata={"help": "dataset name or folder (see envs.data.loading)"})
    learner: str = field(default="combined", metadata={"help": f"the learner to tune, from {LEARNERS}"})
    samples: int = field(default=16, metadata={"help": "trials (configurations drawn from the search space)"})
    updates: int = field(
        default=300, metadata={"help": "updates per trial (RL: on top of the rearrangement warm start)"}
    )
    eval_every: int = field(
        default=D.run.eval_every, metadata={"help": "validate (and report to Tune) every this many updates"}
    )
    grace_period: int = field(default=2, metadata={"help": "ASHA: validation steps before a trial may be stopped"})
    reduction_factor: int = field(default=3, metadata={"help": "ASHA: keep 1 in this many trials per rung"})
    select_metric: str = field(
        default=D.run.select_metric, metadata={"help": "validation metric searched on (and selecting checkpoints)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the trials' training and of the search's draws"})
    jobs: int = field(default=2, metadata={"help": "trials at once on the local Ray instance (ignored with --address)"})
    address: str | None = field(default=None, metadata={"help": "Ray cluster: auto or HOST:PORT (default: local Ray)"})
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    runs_dir: str = field(default="runs/tune", metadata={"help": "trials' run folders, Tune's files and the results"})
    precision: str = override("precision", "fp32")


def check(args: Args) -> None:
    problems = execution.check_backend("ray", args.address, args.jobs)
    if args.learner not in LEARNERS:
        problems.append(f"--learner must be one of {LEARNERS}, got {args.learner!r}")
    for flag, value in (
        ("samples", args.samples),
        ("grace-period", args.grace_period),
        ("updates", args.updates),
        ("eval-every", args.eval_every),
    ):
        if value < 1:
            problems.append(f"--{flag} must be >= 1, got {value}")
    if args.reduction_factor < 2:
        problems.append(f"--reduction-factor must be >= 2, got {args.reduction_factor}")
    if problems:
        raise ArgsError("; ".join(problems))
    train_rl_args.resolve_args(trial_args(args, {}, args.runs_dir))  # the knobs every trial shares


def trial_args(args: Args, config: dict[str, Any], runs_dir: str) -> train_rl_args.Args:
    """The train_rl run of one trial: the searched values on top of train_rl's defaults."""
    config = dict(config)
    lr = config.pop("lr", None)
    if lr is not None:  # the tuned learner's own learning rate
        config["ppo_lr" if args.learner == "ppo" else "rl_lr" if args.learner in RL_LEARNERS else "lr"] = lr
    learners = ["rearrange", args.learner] if args.learner in RL_LEARNERS else [args.learner]
    return train_rl_args.Args(
        dataset=args.dataset,
        data_dir=args.data_dir,
        learners=learners,
        updates=args.updates,
        eval_every=args.eval_every,
        checkpoint_every=args.eval_every,
        select_metric=args.select_metric,
        ensemble=[],
        seed=args.seed,
        runs_dir=runs_dir,
        group_name=f"tune-{args.learner}",
        progress=False,
        precision=args.precision,
        **config,
    )


def tune_trial(config: dict[str, Any], args: Args, runs_dir: str, cwd: str) -> None:
    """Tune function trainable: train_rl with the drawn configuration, reporting the tuned learner."""
    if Path(cwd).is_dir():  # a relative --data-dir means what it means to the driver
        os.chdir(cwd)
    ray_backend.restore_from_ray()

    def send(metrics: dict[str, Any], run_dir: Path | None) -> None:
        if metrics["learner"] == args.learner:  # the warm start's steps are not the trial's score
            ray_backend.send_to_ray(metrics, run_dir)

    with reporting_to(send), cell_threads(args.threads):  # a trial is a grid cell: 1 thread by default
        train_or_resume(trial_args(args, config, runs_dir))


def main(args: Args) -> Path:
    """Run the search; write best_config.json and trials.json; returns best_config.json's path."""
    check(args)
    from ray import tune

    name = f"{args.dataset}__tune-{args.learner}__{args.seed}__{int(time.time())}"
    out_dir = Path(args.runs_dir).resolve() / name
    metric, mode = f"val/{args.select_metric}", "min" if args.select_metric in LOWER_IS_BETTER else "max"
    max_t = -(-args.updates // args.eval_every)  # validation steps of a full trial
    cpus = args.threads or 1  # per trial
    started_here = ray_backend.ray_init(args.address, args.jobs * cpus)
    try:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(tune_trial, args=args, runs_dir=str(out_dir), cwd=os.getcwd()), {"cpu": cpus}
            ),
            param_space=search_space(args.learner),
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=mode,
                num_samples=args.samples,
                search_alg=tune.search.BasicVariantGenerator(random_state=args.seed),
                scheduler=tune.schedulers.ASHAScheduler(
                    max_t=max_t, grace_period=min(args.grace_period, max_t), reduction_factor=args.reduction_factor
                ),
            ),
            run_config=tune.RunConfig(
                name="ray",
                storage_path=str(out_dir),
                verbose=1,
                failure_config=tune.FailureConfig(max_failures=ray_backend.MAX_FAILURES),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        grid = tuner.fit()
    finally:
        if started_here:
            import ray

            ray.shutdown()
    trials: list[dict[str, Any]] = []
    for index in range(len(grid)):
        result = grid[index]
        history = result.metrics_dataframe
        scores = [] if history is None or metric not in history else history[metric].dropna().tolist()
        best = (min if mode == "min" else max)(scores) if scores else None
        trials.append(
            {
                "config": result.config,
                "best_val": best,
                "steps": len(scores),
                "error": None if result.error is None else str(result.error),
            }
        )
    scored = [t for t in trials if t["best_val"] is not None]
    if not scored:
        raise RuntimeError(f"no trial reported validation {args.select_metric}; see {out_dir / 'ray'}")
    winner = (min if mode == "min" else max)(scored, key=lambda t: t["best_val"])
    best_run = replace(trial_args(args, winner["config"], args.runs_dir), group_name=None, progress=True)
    atomic_write_json(out_dir / BEST_CONFIG_FILE, run_config(best_run))
    atomic_write_json(
        out_dir / "trials.json",
        {"args": asdict(args), "metric": metric, "mode": mode, "winner": winner, "trials": trials},
    )
    print(
        f"\nbest validation {args.select_metric}: {winner['best_val']:.4f} with {winner['config']}\n"
        f"trials:      {out_dir / 'trials.json'}\n"
        f"train it:    python experiments/train_rl.py --config {out_dir / BEST_CONFIG_FILE}"
    )
    return out_dir / BEST_CONFIG_FILE


if __name__ == "__main__":
    try:
        main(parse_args(Args))
    except (ArgsError, DataNotFoundError, DataFormatError, RuntimeError) as error:
        sys.exit(f"error: {error}")

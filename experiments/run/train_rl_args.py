"""train_rl's flags and what follows from them alone: `Args`, --resume / --preset / --quick / --config
resolution, the checks that name the flag, each learner's `LearnerConfig`, order and warm start.

Kept apart from train_rl.py, which owns the run's flow (run folder, lock, training each learner, the
report): everything here is settled before any training starts and reads nothing but the flags, the
saved config of a --resume and the policies a warm start names. Scripts and tests import these names
from here; `experiments.train_rl` re-exports only `Args`, the script's documented entry point.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from labelchain.agents.learner_base import RL_LEARNERS, LearnerConfig
from labelchain.agents.learners import FIXED_ORDERINGS, LEARNERS
from labelchain.envs.predictions import DEFAULT_TOP_K
from labelchain.agents.precision import resolve_precision
from labelchain.experiments.run.common import (
    args_from_dict,
    args_from_json,
    flag_name,
    given_fields,
    mark_given,
    parse_args,
    resolve_device,
)
from labelchain.experiments.run.config import ArgsError, TrainKnobs, check_args
from labelchain.experiments.run.learner_run import RunData
from labelchain.experiments.run.presets import PRESETS
from labelchain.experiments.run.folder import CONFIG_FILE, POLICY_DIR, load_policy, run_name_part
from labelchain.experiments.run.threads import Threads

# Flags a --resume may change: they say how to show or where to find things, not what the run is.
SAFE_ON_RESUME = ("resume", "progress", "stop_after_updates", "data_dir", "device", "threads")
MAX_SEED = 2**32 - 1  # numpy's legacy seeding and scikit-learn's k-means take at most 32 bits
PER_CALL = ("resume", "stop_after_updates")  # never taken from the saved run


@dataclass
class Args(TrainKnobs, Threads):
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
    seed: int = field(
        default=0,
        metadata={"help": "seed of the validation split, weights and sampling", "at_least": 0, "at_most": MAX_SEED},
    )
    runs_dir: str = field(default="runs", metadata={"help": "new run folders go here"})
    group_name: str | None = field(default=None, metadata={"help": "run-name group instead of learner names"})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "run folder to continue with its saved configuration: --progress, "
            "--stop-after-updates, --data-dir, --device and --threads are applied; any other flag given "
            "must equal the run's (refused by name otherwise); the data must be the run's (docs/robustness.md)"
        },
    )
    stop_after_updates: int | None = field(
        default=None,
        metadata={"help": "stop (checkpointed, resumable) after this many updates in this call", "at_least": 1},
    )
    quick: bool = field(default=False, metadata={"help": "smoke test: 40 updates per learner, eval every 20"})
    predictions_k: int = field(
        default=DEFAULT_TOP_K,
        metadata={
            "help": "test predictions saved per document: top-k label ids and scores (envs.predictions)",
            "at_least": 5,
        },
    )
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
    given = given_fields(args)
    args = copy.deepcopy(args)
    if args.resume is not None:
        saved = saved_args(Path(args.resume))
        conflicts = resume_conflicts(args, saved, given)
        if conflicts:
            raise ArgsError(
                f"--resume {args.resume}: the run was made with other values of {', '.join(conflicts)}; "
                f"a resumed run keeps its saved configuration ({Path(args.resume) / CONFIG_FILE}). Only "
                f"{', '.join(flag_name(n) for n in SAFE_ON_RESUME if n != 'resume')} may change; "
                "start a new run for other settings"
            )
        # Safe flags are applied when given; --resume itself and --stop-after-updates belong to this call.
        applied = {name: getattr(args, name) for name in SAFE_ON_RESUME if name in given or name in PER_CALL}
        args = mark_given(replace(saved, **applied), set())
    else:  # a resumed run's saved knobs already hold its preset's values
        check_ensemble(args, given)
        apply_preset(args, given)
    if args.quick:
        args.updates, args.eval_every, args.checkpoint_every = min(args.updates, 40), 20, 20
    _check(args)
    return args


def saved_args(run_dir: Path) -> Args:
    """The Args a run folder was made with (its config.json), every field type-checked."""
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ArgsError(f"--resume {run_dir}: no {CONFIG_FILE} there (is it a run folder?)")
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ArgsError(f"{config_path}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise ArgsError(
            f"{config_path}: not a train_rl config (not JSON: line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    if not isinstance(saved, dict) or "args" not in saved:
        raise ArgsError(f'{config_path}: not a train_rl config (no "args" object)')
    try:
        return args_from_dict(Args, saved["args"], str(config_path))
    except ValueError as error:
        raise ArgsError(str(error)) from None


def check_ensemble(args: Args, given: set[str]) -> None:
    """An --ensemble given explicitly must name learners of this run (the default ensembles those of
    its members that are trained, see run_report)."""
    if "ensemble" not in given:
        return
    untrained = [name for name in args.ensemble if name not in args.learners]
    if untrained:
        raise ArgsError(
            f"--ensemble {' '.join(args.ensemble)}: {', '.join(untrained)} not trained in this run "
            f"(--learners {' '.join(args.learners)}); add it to --learners or leave it out of --ensemble"
        )


def apply_preset(args: Args, given: set[str] | None = None) -> None:
    """--preset: its values for the knobs not given explicitly (`given`, see `given_fields`; typed
    flags win whatever their value) and still at this script's defaults."""
    if args.preset not in PRESETS:
        return  # none, or a bad name that _check reports
    given = given_fields(args) if given is None else given
    preset, defaults = PRESETS[args.preset].flat(), type(args)()
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
        if knob not in given and getattr(args, knob) == getattr(defaults, knob):
            setattr(args, knob, preset[knob])


def resume_conflicts(given: Args, saved: Args, names: set[str]) -> list[str]:
    """Flags given with --resume (`names`: typed on the command line, whatever their value) whose
    value differs from the saved run's; the safe ones are applied instead."""
    conflicts = []
    for spec in fields(Args):
        name = spec.name
        if name in SAFE_ON_RESUME or name in ("runs_dir", "config") or name not in names:
            continue  # runs_dir: unused on resume (the folder is given); config: its fields count
        value = getattr(given, name)
        if value != getattr(saved, name):
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
    # a warm start no learner of this run uses would be silently ignored (issue 19: a typed flag is
    # applied or refused); 'rearrange' is the default and means "if rearrange is trained"
    if args.warm_start not in (None, "rearrange") and not any(n in RL_LEARNERS for n in args.learners):
        raise ArgsError(
            f"--warm-start {args.warm_start}: no learner of this run starts from it (it starts "
            f"{', '.join(RL_LEARNERS)}; --learners is {' '.join(args.learners)})"
        )
    if args.rearrange_warm_start is not None and "rearrange" not in args.learners:
        raise ArgsError(
            f"--rearrange-warm-start {args.rearrange_warm_start}: this run does not train rearrange "
            f"(--learners is {' '.join(args.learners)})"
        )
    for flag, source in external_sources(args).items():
        if not Path(source).exists():
            raise ArgsError(f"--{flag} {source}: no such file or folder")
    try:
        learner_config(args).check()
        learner_config(args, name="combined").check()
    except ValueError as error:
        raise ArgsError(str(error)) from None


def learner_config(args: Args, max_steps: int | None = None, name: str = "") -> LearnerConfig:
    """Learner `name`'s config from the flags (`name` "" = a supervised learner's, for the checks):
    the configuration they describe (`TrainKnobs.to_config`) at that learner's rate, with --precision
    resolved for the device."""
    config = args.to_config(args.seed, max_steps).learner_config(name)
    return replace(config, precision=resolve_precision(args.precision, resolve_device(args.device).type))


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
    parsed = parse_args(Args, argv, defaults=replace(defaults, config=config))
    return mark_given(parsed, given_fields(parsed) | given_fields(defaults))

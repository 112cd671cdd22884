"""The training knobs every training script shares, declared once.

`train_rl.Args`, `compare_orderings.Args` and `ablations.Args` inherit `TrainKnobs`, so each knob has
one flag name, one type, one help text and one default (a script may redeclare a field only to give
its own budget default, e.g. `updates`). Their runs are built with `knobs_of(args)`, which copies
every knob, so a knob added here reaches every script without touching four functions.

A new knob must default to the behaviour runs had before it existed: saved run configs that lack it
read it at its default (`run_lookup.run_config`), so finished runs stay valid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from envs.metrics import RANKING_NAMES, SET_NAMES
from envs.rewards import DEFAULT_REWARD_MODE, REWARD_MODES, REWARDS


class ArgsError(ValueError):
    """Bad command line or run folder: reported as one line, without a traceback."""


@dataclass
class TrainKnobs:
    """How each learner trains and is validated (shared by train_rl, compare_orderings, ablations)."""

    updates: int = field(default=500, metadata={"help": "optimisation steps per learner"})
    batch_size: int = field(default=64, metadata={"help": "documents per update"})
    hidden_size: int = field(default=128, metadata={"help": "GRU hidden size (also document encoding size)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the document encoding and the GRU output"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of supervised learners"})
    rl_lr: float | None = field(
        default=3e-4, metadata={"help": "learning rate of reinforce/ppo/combined (none = --lr); lower "
                                        "because they fine-tune a warm start (bibtex seed 0: 1e-3 drifted "
                                        "below the start on val nDCG@3, 3e-4 rose above it)"},
    )
    reward: str = field(default="f1", metadata={"help": f"RL reward metric, from {REWARDS}"})
    reward_mode: str = field(default=DEFAULT_REWARD_MODE, metadata={"help": f"from {REWARD_MODES}: "
                             "'delta' pays per-step differences, 'terminal' the final quality once"})
    baseline: str = field(default="value", metadata={"help": "RL baseline: value, self_critical, none"})
    entropy_coef: float = field(default=0.01, metadata={"help": "RL entropy bonus weight"})
    ppo_lr: float | None = field(
        default=5e-5, metadata={"help": "learning rate of ppo (none = --rl-lr): it takes ppo_epochs x "
                                        "ppo_minibatches steps per rollout (bibtex seed 0, 100 updates from "
                                        "the warm start: 3e-4 drifted val nDCG@3 0.579 -> 0.501, 5e-5 held 0.578-0.584)"},
    )
    ppo_epochs: int = field(default=4, metadata={"help": "PPO: passes over each rollout"})
    ppo_minibatches: int = field(default=4, metadata={"help": "PPO: minibatches per pass"})
    rl_weight: float = field(default=0.9, metadata={"help": "combined: weight of RL vs rearrangement loss"})
    greedy_rearrangement: bool = field(
        default=False, metadata={"help": "rearrange targets from the greedy chain instead of a sampled one"},
    )
    val_fraction: float = field(default=0.1, metadata={"help": "share of train held out for validation"})
    eval_every: int = field(default=50, metadata={"help": "validate every this many updates"})
    select_metric: str = field(default="nDCG@3", metadata={"help": "validation metric choosing the best policy "
                                                                   "(and the best fixed ordering)"})
    checkpoint_every: int = field(default=100, metadata={"help": "write checkpoint.pt every this many updates"})
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})


def knobs_of(args: TrainKnobs) -> dict[str, Any]:
    """Every knob of `args` by field name, to build another script's Args (`train_rl.Args(**knobs_of(a), ...)`)."""
    return {spec.name: getattr(args, spec.name) for spec in fields(TrainKnobs)}


def check_knobs(args: TrainKnobs) -> list[str]:
    """Range problems of the knobs, one line each naming the flag (empty when all is well)."""
    problems = []
    for name in ("updates", "batch_size", "hidden_size", "eval_every", "checkpoint_every", "ppo_epochs",
                 "ppo_minibatches"):
        value = getattr(args, name)
        if value < 1:
            problems.append(f"{_flag(name)} must be >= 1, got {value}")
    for name in ("lr", "rl_lr", "ppo_lr"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            problems.append(f"{_flag(name)} must be a finite number > 0, got {value}")
    if not (math.isfinite(args.entropy_coef) and args.entropy_coef >= 0):
        problems.append(f"--entropy-coef must be a finite number >= 0, got {args.entropy_coef}")
    if not 0.0 <= args.rl_weight <= 1.0:  # also false for nan
        problems.append(f"--rl-weight must be in [0, 1], got {args.rl_weight}")
    if not 0.0 <= args.dropout < 1.0:  # also false for nan
        problems.append(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0.0 < args.val_fraction < 1.0:
        problems.append(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.reward not in REWARDS:
        problems.append(f"--reward must be one of {REWARDS}, got {args.reward!r}")
    if args.reward_mode not in REWARD_MODES:
        problems.append(f"--reward-mode must be one of {REWARD_MODES}, got {args.reward_mode!r}")
    if args.select_metric not in RANKING_NAMES + SET_NAMES:
        problems.append(f"--select-metric must be one of {RANKING_NAMES + SET_NAMES}, got {args.select_metric!r}")
    return problems


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")

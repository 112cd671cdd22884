"""The training knobs every training script shares, declared once: the command-line face of the one
configuration (agents.config.Config).

`train_rl.Args`, `compare_orderings.Args` and `ablations.Args` inherit `TrainKnobs`, so each knob has
one flag name, one type, one help text and one default (a script may redeclare a field only to give
its own budget default, e.g. `updates`). `TrainKnobs` is a different thing from `Config` (flags with
help, ranges and the script-only knobs: --preset, --device, --data-dir, --guidance's cluster
settings), so it stays a class, but it restates no default (each is `DEFAULTS`') and turns into the
configuration in one place, `to_config` (knobs named as config fields map by name). Grid cells build
their runs with `knobs_of(args)`, which copies every knob, so a knob added here reaches every script
without touching four functions. Ranges live in each field's metadata and `check_args` checks every
numeric flag of any script with them.

A new knob must default to the behaviour runs had before it existed: saved run configs that lack it
read it at its default (`run_lookup.run_config`), so finished runs stay valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from labelchain.agents.config import DEFAULTS as D, SECTION_OF, Config
from labelchain.agents.guidance import GUIDANCE_KINDS
from labelchain.agents.output_layers import OUTPUT_KINDS
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.precision import PRECISIONS
from labelchain.agents.prior_columns import PRIOR_PEERS
from labelchain.envs.metrics import RANKING_NAMES, SET_NAMES
from labelchain.envs.mcg import MCGSpec
from labelchain.envs.rewards import REWARD_MODES, REWARDS
from labelchain.experiments.run.common import flag_name
from labelchain.experiments.run.presets import PRESETS


class ArgsError(ValueError):
    """Bad command line or run folder: reported as one line, without a traceback."""


@dataclass
class TrainKnobs:
    """How each learner trains and is validated (shared by train_rl, compare_orderings, ablations)."""

    updates: int = field(default=D.run.updates, metadata={"help": "optimisation steps per learner", "at_least": 1})
    batch_size: int = field(default=D.learner.batch_size, metadata={"help": "documents per update", "at_least": 1})
    hidden_size: int = field(
        default=D.policy.hidden_size, metadata={"help": "GRU hidden size (also document encoding size)", "at_least": 1}
    )
    dropout: float = field(
        default=D.policy.dropout,
        metadata={"help": "dropout on the document encoding and the GRU output", "at_least": 0, "below": 1},
    )
    lr: float = field(default=D.learner.lr, metadata={"help": "Adam learning rate of supervised learners", "above": 0})
    rl_lr: float | None = field(
        default=D.run.rl_lr,
        metadata={
            "help": "learning rate of reinforce/ppo/combined (none = --lr); lower "
            "because they fine-tune a warm start (bibtex seed 0: 1e-3 drifted "
            "below the start on val nDCG@3, 3e-4 rose above it)",
            "above": 0,
        },
    )
    reward: str = field(default=D.learner.reward, metadata={"help": f"RL reward metric, from {REWARDS}"})
    reward_mode: str = field(
        default=D.learner.reward_mode,
        metadata={"help": f"from {REWARD_MODES}: 'delta' pays per-step differences, 'terminal' the final quality once"},
    )
    baseline: str = field(default=D.learner.baseline, metadata={"help": "RL baseline: value, self_critical, none"})
    entropy_coef: float = field(
        default=D.learner.entropy_coef, metadata={"help": "RL entropy bonus weight", "at_least": 0}
    )
    ppo_lr: float | None = field(
        default=D.run.ppo_lr,
        metadata={
            "help": "learning rate of ppo (none = --rl-lr): it takes ppo_epochs x "
            "ppo_minibatches steps per rollout (bibtex seed 0, 100 updates from "
            "the warm start: 3e-4 drifted val nDCG@3 0.579 -> 0.501, 5e-5 held 0.578-0.584)",
            "above": 0,
        },
    )
    ppo_epochs: int = field(
        default=D.learner.ppo_epochs, metadata={"help": "PPO: passes over each rollout", "at_least": 1}
    )
    ppo_minibatches: int = field(
        default=D.learner.ppo_minibatches, metadata={"help": "PPO: minibatches per pass", "at_least": 1}
    )
    rl_weight: float = field(
        default=D.learner.rl_weight,
        metadata={"help": "combined: weight of RL vs rearrangement loss", "at_least": 0, "at_most": 1},
    )
    greedy_rearrangement: bool = field(
        default=D.learner.greedy_rearrangement,
        metadata={"help": "rearrange targets from the greedy chain instead of a sampled one"},
    )
    output: str = field(
        default=D.policy.output,
        metadata={
            "help": f"policy output layer, from {OUTPUT_KINDS}: one softmax "
            "over all labels, or factorised through a PIFA label tree"
        },
    )
    tree_branching: int = field(
        default=D.policy.tree_branching,
        metadata={"help": "tree output: children per node (PECOS' nr_splits)", "at_least": 2},
    )
    tree_leaf_size: int = field(
        default=D.policy.tree_leaf_size,
        metadata={"help": "tree output: at most this many labels per leaf", "at_least": 1},
    )
    tree_beam: int = field(
        default=D.policy.tree_beam,
        metadata={"help": "tree output: clusters kept per level in greedy decoding", "at_least": 1},
    )
    tree_query_size: int | None = field(
        default=D.policy.tree_query_size,
        metadata={
            "help": "tree output: score nodes and labels against a low-rank query of this "
            "size (none = the full hidden + doc state); cheaper decoding at large L",
            "at_least": 1,
        },
    )
    sparse_label_grads: bool = field(
        default=D.policy.sparse_label_grads,
        metadata={
            "help": "tree output: sparse gradients and lazy Adam (SparseAdam) for the label "
            "tables, so a step costs O(labels touched), not O(L) (agents/optim.py)"
        },
    )
    val_fraction: float = field(
        default=D.run.val_fraction, metadata={"help": "share of train held out for validation", "above": 0, "below": 1}
    )
    eval_every: int = field(
        default=D.run.eval_every, metadata={"help": "validate every this many updates", "at_least": 1}
    )
    select_metric: str = field(
        default=D.run.select_metric,
        metadata={"help": "validation metric choosing the best policy (and the best fixed ordering)"},
    )
    checkpoint_every: int = field(
        default=D.run.checkpoint_every, metadata={"help": "write checkpoint.pt every this many updates", "at_least": 1}
    )
    guidance: str = field(
        default="none",
        metadata={
            "help": f"cluster guidance, from {GUIDANCE_KINDS}: bcl = XLGen's bit-vector guidance "
            "(agents.guidance), mcg = cluster tokens emitted before the labels (agents.mcg)"
        },
    )
    clusters: int = field(
        default=30,
        metadata={"help": "--guidance: k-means clusters of the PIFA label embeddings (XLGen: 30)", "at_least": 1},
    )
    guidance_weight: float = field(
        default=D.policy.guidance_weight, metadata={"help": "bcl: weight of the cluster BCE loss", "at_least": 0}
    )
    guidance_anneal: bool = field(
        default=D.policy.guidance_anneal, metadata={"help": "bcl: divide that weight by the epoch (1-based)"}
    )
    guidance_mix: float = field(
        default=D.policy.guidance_mix,
        metadata={
            "help": "bcl: share of training documents conditioned on their predicted clusters instead of the gold ones",
            "at_least": 0,
            "at_most": 1,
        },
    )
    mcg_restrict: bool = field(default=False, metadata={"help": "mcg: labels only from the clusters the chain emitted"})
    overlap_from: str | None = field(
        default=None,
        metadata={
            "help": "bcl, mcg: overlapping clusters (label disentanglement) from this saved "
            "bcl or mcg policy's cluster predictions on the training documents (a run "
            "with the same --dataset, --seed, --clusters, --hide-train-labels)"
        },
    )
    overlap_lambda: int = field(
        default=2, metadata={"help": "--overlap-from: clusters per label at most", "at_least": 1}
    )
    hide_train_labels: float = field(
        default=0.0,
        metadata={
            "help": "positive-unlabelled setting: hide this fraction of each training "
            "document's labels (seeded, at least one kept; validation is carved "
            "from the hidden labels, test keeps all)",
            "at_least": 0,
            "at_most": 1,
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "data folder (default: ../shared/data)"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})
    weight_decay: float = field(default=D.learner.weight_decay, metadata={"help": "AdamW weight decay", "at_least": 0})
    patience: int | None = field(
        default=D.run.patience,
        metadata={
            "help": "stop a learner after this many validations without improvement (none = run all --updates)",
            "at_least": 1,
        },
    )
    preset: str | None = field(
        default=None,
        metadata={
            "help": "'paper' (experiments/run/presets.py): larger model, dropout on the GRU "
            "inputs, weight decay, patience, a second checkpoint (best example F1) "
            "for the label sets; fills the knobs left at their defaults"
        },
    )
    prior: str = field(
        default="none",
        metadata={
            "help": f"a peer's out-of-fold scores as the chain's prior, from {('none',) + PRIOR_PEERS}: logits + "
            "a * prior + b (agents.prior_columns; the prior is built once and cached, experiments/prior_cache.py)"
        },
    )
    prior_scale: str = field(
        default="shared",
        metadata={"help": "--prior: learn one (a, b) pair ('shared') or one per label ('per_label')"},
    )
    shortlist: int = field(
        default=0,
        metadata={
            "help": "--prior: each document's action space is its top-M prior labels + STOP (0 = every label); "
            "gold labels outside it are not trained on (the matcher's recall loss)",
            "at_least": 0,
        },
    )
    label_history: bool = field(
        default=True,
        metadata={
            "help": "the GRU reads the labels emitted so far (--no-label-history: an independent scorer, ablation)"
        },
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu or cuda"})
    precision: str = field(
        default="fp32",
        metadata={
            "help": f"from {PRECISIONS}: bf16 = bf16 matrix products (autocast) where the CPU (AVX-512 BF16 / AMX) "
            "or GPU has them, else fp32 with a one-line message; weights, optimiser state, log-probabilities, "
            "losses and metrics stay fp32 (agents/precision.py)"
        },
    )

    def to_policy_config(self, mcg: MCGSpec | None = None) -> PolicyConfig:
        """The architecture the flags describe: the preset's (its label embedding size, input dropout,
        auxiliary head; its hidden size and dropout already fill the flags) or the default one, with
        every architecture flag; --guidance bcl adds `n_clusters`, --guidance mcg passes `mcg`, --prior
        its scale mode, --shortlist and --no-label-history theirs."""
        base = PRESETS[self.preset].policy if self.preset in PRESETS else D.policy
        return base.replace(
            hidden_size=self.hidden_size,
            dropout=self.dropout,
            output=self.output,
            tree_branching=self.tree_branching,
            tree_leaf_size=self.tree_leaf_size,
            tree_beam=self.tree_beam,
            tree_query_size=self.tree_query_size,
            sparse_label_grads=self.sparse_label_grads,
            n_clusters=self.clusters if self.guidance == "bcl" else 0,
            prior="none" if self.prior == "none" else self.prior_scale,
            shortlist=bool(self.shortlist),
            label_history=self.label_history,
            guidance_weight=self.guidance_weight,
            guidance_anneal=self.guidance_anneal,
            guidance_mix=self.guidance_mix,
            mcg=mcg,
        )

    def to_config(self, seed: int = 0, max_steps: int | None = None) -> Config:
        """The one configuration these flags describe: the policy section as `to_policy_config`, every
        knob named as a learner or run field under that name, the run's `seed` and the envs' step cap.
        Flags left at their defaults give `DEFAULTS` (tested)."""
        knobs = {
            spec.name: getattr(self, spec.name)
            for spec in fields(TrainKnobs)
            if SECTION_OF.get(spec.name) in ("learner", "run")
        }
        return D.replace(policy=self.to_policy_config()).changed(seed=seed, max_steps=max_steps, **knobs)


def knob(name: str) -> Any:
    """Knob `name` exactly as `TrainKnobs` declares it (flag, default, range, help), for a script whose
    Args are not `TrainKnobs` (the strength grid's --prior flags)."""
    spec = _KNOB_FIELDS[name]
    return field(default=spec.default, metadata=dict(spec.metadata))


def override(name: str, default: Any, help: str | None = None) -> Any:
    """A script's own default for knob `name` (same flag, range and, unless given, help text)."""
    metadata = dict(_KNOB_FIELDS[name].metadata)
    if help is not None:
        metadata["help"] = help
    return field(default=default, metadata=metadata)


_KNOB_FIELDS = {spec.name: spec for spec in fields(TrainKnobs)}
PRIOR_KNOBS = ("prior", "prior_scale", "shortlist", "label_history")  # the chain-on-a-prior flags (issue 16)


def knobs_of(args: TrainKnobs) -> dict[str, Any]:
    """Every knob of `args` by field name, to build another script's Args (`train_rl_args.Args(**knobs_of(a), ...)`)."""
    return {spec.name: getattr(args, spec.name) for spec in fields(TrainKnobs)}


def check_args(args: Any) -> list[str]:
    """Every problem of a script's Args, one line each naming the flag (empty when all is well).

    The one place flags are range-checked: a numeric field declares its range in its metadata
    (`at_least`, `above`, `at_most`, `below`; list fields apply it to each value), and every float
    must be finite. Scripts add their own checks that are not about ranges (names, folders).
    """
    problems = []
    for spec in fields(args):
        value = getattr(args, spec.name)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            problem = _range_problem(item, spec.metadata)
            if problem:
                shown = value if isinstance(value, list) else item
                problems.append(f"{flag_name(spec.name)} must be {problem}, got {shown}")
                break
    if isinstance(args, TrainKnobs):
        choices = (
            ("reward", REWARDS),
            ("reward_mode", REWARD_MODES),
            ("select_metric", RANKING_NAMES + SET_NAMES),
            ("preset", (None, "paper", "small")),
            ("device", ("auto", "cpu", "cuda")),
            ("output", OUTPUT_KINDS),
            ("guidance", GUIDANCE_KINDS),
        )
        for name, allowed in choices:
            if getattr(args, name) not in allowed:
                problems.append(f"{flag_name(name)} must be one of {allowed}, got {getattr(args, name)!r}")
        problems += precision_problems(args.precision)
        if args.overlap_from is not None and args.guidance == "none":
            problems.append("--overlap-from needs --guidance bcl or mcg")
        if args.mcg_restrict and args.guidance != "mcg":
            problems.append("--mcg-restrict needs --guidance mcg")
        if args.guidance == "mcg" and args.output != "flat":
            problems.append("--guidance mcg needs --output flat (the cluster tokens are flat actions)")
        if args.sparse_label_grads and args.output != "tree":
            problems.append("--sparse-label-grads needs --output tree")
        if args.tree_query_size is not None and args.output != "tree":
            problems.append("--tree-query-size needs --output tree")
        problems += prior_problems(args)
        if args.prior != "none" and (args.output != "flat" or args.guidance != "none" or args.hide_train_labels):
            problems.append("--prior needs --output flat, no --guidance and no --hide-train-labels")
    return problems


def prior_problems(args: Any) -> list[str]:
    """The checks of the --prior flags (`PRIOR_KNOBS`) wherever they are declared: TrainKnobs and the
    strength grid (which declares them with `knob`)."""
    problems = []
    for name, allowed in (("prior", ("none",) + PRIOR_PEERS), ("prior_scale", ("shared", "per_label"))):
        if getattr(args, name) not in allowed:
            problems.append(f"{flag_name(name)} must be one of {allowed}, got {getattr(args, name)!r}")
    if args.shortlist and args.prior == "none":
        problems.append("--shortlist needs --prior (the shortlist is the prior's top-M labels)")
    return problems


def precision_problems(precision: str) -> list[str]:
    """The --precision check every training script makes (TrainKnobs' and the grids' own Args)."""
    return [] if precision in PRECISIONS else [f"--precision must be one of {PRECISIONS}, got {precision!r}"]


def _range_problem(value: float, limits: Any) -> str | None:
    bounds = [
        ("at_least", ">=", lambda v, b: v >= b),
        ("above", ">", lambda v, b: v > b),
        ("at_most", "<=", lambda v, b: v <= b),
        ("below", "<", lambda v, b: v < b),
    ]
    wanted = " and ".join(f"{sign} {limits[key]}" for key, sign, _ in bounds if key in limits)
    if isinstance(value, float) and not math.isfinite(value):
        return f"a finite number {wanted}".rstrip()
    if all(holds(value, limits[key]) for key, _, holds in bounds if key in limits):
        return None
    return wanted

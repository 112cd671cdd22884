"""Training speed of the chain learners, today's passes and agents.fused side by side (one thread).

    python experiments/bench/bench_training.py                       # bibtex + delicious, 3 learners, H 256 / 1024
    python experiments/bench/bench_training.py --profile --datasets delicious --hidden-sizes 1024

For each dataset x learner x precision x hidden size, two learners start from the same policy and
seed: `nn_gru` (LearnerConfig(fused=False): the nn.GRU incremental and packed passes every learner
used before agents.fused, still in the library) and `fused`. Their updates alternate (the order
flips every round) so both see the same load on a shared machine, and each round also times a
64 x 1280 x 3072 GEMM in each precision: docs/s and GEMM rates are medians over rounds, the speed-up
the median of the per-round ratios.

Model FLOPs are what one update has to compute, counted the same way for both passes: per sampled
step 2 * 3H * (E + H) (GRU) + 2 * (L + 1) * H (output layer) + 2 * (H + D) (value), per document
once the document halves 2 * 3H * D + 2 * (L + 1) * D and the encoder's 2 * nnz * D; teacher-forced
positions count three times (forward and backward), sampled steps three times only when the rollout
carries gradients (combined). Model-FLOP utilisation = those FLOP/s over the same round's GEMM rate.
The nn.GRU pass does more work than that count (the document halves at every step, ended chains).

--profile prints, per pass, torch.profiler's time by phase (sampling, teacher forcing, backward and
optimiser step) and by kind of operator, for a few updates of the paper-size policy.
bf16 is measured only where the processor has native bf16 products (agents.precision).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

import labelchain.agents.learners as learners_module
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.precision import bf16_native
from labelchain.envs.data.loading import load_dataset
from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.experiments.run.common import REPO_ROOT, Renames, atomic_write_json, command_line, parse_args
from labelchain.experiments.run.presets import PRESETS

SCRIPT = "experiments/bench/bench_training.py"
PASSES = ("nn_gru", "fused")
_ORIGINAL_TF = learners_module.teacher_forcing_loss


@dataclass
class Args(Threads):
    """Docs/s and model-FLOP utilisation of learner updates, nn.GRU passes vs agents.fused."""

    RENAMED: ClassVar[Renames] = {"out": "out_file"}  # issue 20: --out-dir is a folder, --out-file one file

    datasets: list[str] = field(default_factory=lambda: ["bibtex", "delicious"])
    learners: list[str] = field(default_factory=lambda: ["freq2rare", "rearrange", "combined"])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 1024])
    rounds: int = field(default=3, metadata={"help": "timed updates per pass (alternating)"})
    warmup: int = 1
    batch_size: int = 64
    seed: int = 0
    profile: bool = field(default=False, metadata={"help": "torch.profiler breakdown instead of the timing table"})
    out_file: str | None = field(
        default=str(REPO_ROOT / "experiments" / "results" / "training_speed.json"),
        metadata={"help": "JSON of every figure (none = do not write)"},
    )


def gemm_rate(precision: str, repeats: int = 5) -> float:
    """GFLOP/s of a 64 x 1280 by 1280 x 3072 product (a paper-size GRU step's shape) in `precision`."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(64, 1280, dtype=dtype), torch.randn(1280, 3072, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * 64 * 1280 * 3072 / (time.perf_counter() - started) / 1e9


class Counted:
    """One learner with its sampled steps and teacher-forced positions counted (for the FLOPs)."""

    def __init__(self, learner: Any) -> None:
        self.learner, self.sampled, self.sampled_grad, self.forced = learner, 0, 0, 0
        rollout = learner.collector.rollout

        def counted_rollout(*a: Any, **k: Any):
            with record_function("phase: sampling"):
                episodes = rollout(*a, **k)
            if torch.is_grad_enabled():
                self.sampled_grad += episodes.n_steps
            else:
                self.sampled += episodes.n_steps
            return episodes

        learner.collector.rollout = counted_rollout
        optimize = learner._optimize

        def timed_optimize(loss):
            with record_function("phase: backward + optimiser"):
                return optimize(loss)

        learner._optimize = timed_optimize

    def reset(self) -> None:
        self.sampled = self.sampled_grad = self.forced = 0


def _counting_teacher_forcing(counters: dict[int, Counted]) -> Callable:
    """labelchain.agents.learners' teacher_forcing_loss, counting positions for the learner whose policy it gets."""
    inner = learners_module.teacher_forcing_loss

    def wrapped(policy, X, targets, **k):
        counted = counters.get(id(policy))
        if counted is not None:
            counted.forced += int((np.asarray(targets) >= 0).sum())
        with record_function("phase: teacher forcing"):
            return inner(policy, X, targets, **k)

    return wrapped


def model_flops(policy: ChainPolicy, counted: Counted, docs: int, nnz: float) -> float:
    """The FLOPs an update has to compute (module docstring), from the counted steps and positions."""
    H, E, D, L = (
        policy.gru.hidden_size,
        policy.label_embedding.embedding_dim,
        policy.config["doc_size"],
        policy.n_labels,
    )
    step = 2 * 3 * H * (E + H) + 2 * (L + 1) * H + 2 * (H + D)
    per_doc = 2 * 3 * H * D + 2 * (L + 1) * D + 2 * nnz * D
    steps = counted.sampled + 3 * (counted.sampled_grad + counted.forced)
    return steps * step + docs * per_doc * (3 if counted.forced or counted.sampled_grad else 1)


def build(dataset: Any, learner: str, hidden: int, precision: str, fused: bool, seed: int, batch: int):
    paper = PRESETS["paper"]
    torch.manual_seed(seed)
    policy = ChainPolicy(
        dataset.n_features,
        dataset.n_labels,
        hidden_size=hidden,
        label_embed_size=paper.policy.label_embed_size if hidden >= 1024 else 64,
        dropout=paper.policy.dropout,
        input_dropout=paper.policy.input_dropout,
        aux_weight=paper.policy.aux_weight,
    )
    policy.fit_input_normalization(dataset.train.X)
    rl_lr = paper.run.rl_lr
    lr = rl_lr if learner == "combined" and rl_lr is not None else paper.learner.lr
    config = LearnerConfig(
        lr=lr, batch_size=batch, seed=seed, weight_decay=paper.learner.weight_decay, fused=fused, precision=precision
    )
    return policy, make_learner(learner, policy, dataset.train, config)


def bench_one(dataset: Any, learner_name: str, hidden: int, precision: str, args: Args) -> dict:
    rng = np.random.default_rng(args.seed)
    n = len(dataset.train)
    batches = [np.sort(rng.choice(n, min(args.batch_size, n), replace=False)) for _ in range(args.warmup + args.rounds)]
    nnz = float(np.mean([_nnz(dataset.train.X[b]) for b in batches]))
    runs = {}
    for name in PASSES:
        policy, learner = build(dataset, learner_name, hidden, precision, name == "fused", args.seed, args.batch_size)
        runs[name] = (policy, Counted(learner))
    learners_module.teacher_forcing_loss = _counting_teacher_forcing({id(p): c for p, c in runs.values()})
    times: dict[str, list[float]] = {name: [] for name in PASSES}
    flops: dict[str, list[float]] = {name: [] for name in PASSES}
    gemm: list[float] = []
    try:
        for i, rows in enumerate(batches):
            order = PASSES if i % 2 == 0 else PASSES[::-1]
            for name in order:
                policy, counted = runs[name]
                counted.reset()
                started = time.perf_counter()
                counted.learner.update(rows)
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - started)
                    flops[name].append(model_flops(policy, counted, len(rows), nnz))
            if i >= args.warmup:
                gemm.append(gemm_rate(precision))
    finally:
        learners_module.teacher_forcing_loss = _ORIGINAL_TF
    rate = statistics.median(gemm)
    row: dict[str, Any] = {
        "dataset": dataset.name,
        "learner": learner_name,
        "precision": precision,
        "hidden": hidden,
        "gemm_gflops": rate,
    }
    for name in PASSES:
        achieved = statistics.median(f / t for f, t in zip(flops[name], times[name])) / 1e9
        row[name] = {
            "docs_per_s": statistics.median(args.batch_size / t for t in times[name]),
            "model_gflop_per_doc": statistics.median(flops[name]) / args.batch_size / 1e9,
            "achieved_gflops": achieved,
            "mfu": achieved / rate,
        }
    row["speedup"] = statistics.median(old / new for old, new in zip(times["nn_gru"], times["fused"]))
    return row


def _nnz(X: Any) -> float:
    """Mean non-zero features per row (dense rows count their non-zeros too: the encoder's real work)."""
    return X.nnz / X.shape[0] if hasattr(X, "nnz") else float(np.count_nonzero(X)) / X.shape[0]


def profile_one(dataset: Any, learner_name: str, hidden: int, args: Args) -> None:
    """Print where a few updates of each pass spend their time (phases, then operator kinds)."""
    kinds = {
        "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"),
        "gradient buffers (fill_/add_/copy_)": ("aten::fill_", "aten::add_", "aten::copy_", "aten::zero_"),
        "random draws": ("aten::exponential_", "aten::bernoulli_", "aten::multinomial", "aten::uniform_"),
        "optimiser + clipping": ("aten::_fused_adamw_", "aten::linalg_vector_norm", "aten::_foreach_mul_"),
    }
    for name in PASSES:
        policy, learner = build(dataset, learner_name, hidden, "fp32", name == "fused", args.seed, args.batch_size)
        counted = Counted(learner)
        learners_module.teacher_forcing_loss = _counting_teacher_forcing({id(policy): counted})
        rng = np.random.default_rng(args.seed)
        batches = [np.sort(rng.choice(len(dataset.train), args.batch_size, replace=False)) for _ in range(3)]
        learner.update(batches[0])
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for rows in batches[1:]:
                learner.update(rows)
        wall = (time.perf_counter() - started) * 1e3 / 2
        events = prof.key_averages()
        phases = {e.key: e.cpu_time_total / 1e3 / 2 for e in events if e.key.startswith("phase: ")}
        ops = {e.key: e.self_cpu_time_total / 1e3 / 2 for e in events if not e.key.startswith("phase: ")}
        by_kind = {kind: sum(ops.get(op, 0.0) for op in names) for kind, names in kinds.items()}
        by_kind["other operators"] = sum(ops.values()) - sum(by_kind.values())
        by_kind["outside operators (Python, numpy, env)"] = wall - sum(ops.values())
        print(f"\n{dataset.name} {learner_name} H={hidden} {name}: {wall:.0f} ms/update under the profiler")
        for key, value in phases.items():
            print(f"  {key:45s} {value:8.0f} ms {100 * value / wall:5.1f}%")
        for key, value in by_kind.items():
            print(f"  {key:45s} {value:8.0f} ms {100 * value / wall:5.1f}%")
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:6]
        print("  top operators: " + ", ".join(f"{k} {v:.0f} ms" for k, v in top))
    learners_module.teacher_forcing_loss = _ORIGINAL_TF


def main(args: Args) -> list[dict]:
    set_threads(args.threads or 1)  # benchmarks default to one thread (experiments.run.threads)
    rows = []
    for dataset_name in args.datasets:
        dataset = load_dataset(dataset_name)
        for learner in args.learners:
            for hidden in args.hidden_sizes:
                if args.profile:
                    profile_one(dataset, learner, hidden, args)
                    continue
                for precision in args.precisions:
                    if precision == "bf16" and not bf16_native("cpu"):
                        print(f"{dataset_name} {learner} H={hidden} bf16: no native bf16 products here, skipped")
                        continue
                    row = bench_one(dataset, learner, hidden, precision, args)
                    rows.append(row)
                    old, new = row["nn_gru"], row["fused"]
                    print(
                        f"{dataset_name:9s} {learner:9s} {precision} H={hidden:5d}  docs/s nn_gru {old['docs_per_s']:6.1f}"
                        f" fused {new['docs_per_s']:6.1f}  x{row['speedup']:.2f}  GEMM {row['gemm_gflops']:5.1f} GFLOP/s"
                        f"  MFU nn_gru {old['mfu']:.0%} fused {new['mfu']:.0%}"
                        f"  ({new['model_gflop_per_doc']:.2f} GFLOP/doc)",
                        flush=True,
                    )
    if args.out_file and rows:
        atomic_write_json(
            args.out_file, {"command": command_line(args, SCRIPT), "threads": torch.get_num_threads(), "results": rows}
        )
    return rows


if __name__ == "__main__":
    main(parse_args(Args))

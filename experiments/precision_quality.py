"""What bf16 costs in quality: the same chain trained and decoded in fp32 and in bf16, several seeds.

    python experiments/precision_quality.py --dataset bibtex --preset small --updates 300 --seeds 0 1 2

Rearrangement (`--learner`) from the same initial policy and batches in both precisions, then greedy
decoding of the test split in the same precision; test metrics per seed, their mean and standard
deviation, and the bf16 - fp32 difference per metric against one seed standard deviation (fp32's).

bf16 runs as the library runs it (agents.precision.autocast), whether or not this processor has
native bf16 products: where it has none the products are emulated (slower, the same rounding), so
the numbers are bf16's numerics, not its speed. Writes nothing; prints a table and a JSON line.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.precision import PRECISIONS, bf16_native
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.presets import PRESETS

METRICS = ("example_f1", "micro_f1", "P@1", "nDCG@5")


@dataclass
class Args(Threads):
    """bf16 vs fp32 test metrics of one learner over several seeds."""

    dataset: str = "bibtex"
    preset: str = field(default="small", metadata={"help": f"policy size and rates, one of {sorted(PRESETS)}"})
    learner: str = "rearrange"
    updates: int = 300
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def run(args: Args, seed: int, precision: str) -> dict[str, float]:
    data, preset = load_dataset(args.dataset), PRESETS[args.preset]
    torch.manual_seed(seed)
    policy = ChainPolicy(
        data.n_features,
        data.n_labels,
        hidden_size=preset.policy.hidden_size,
        label_embed_size=preset.policy.label_embed_size,
        dropout=preset.policy.dropout,
        input_dropout=preset.policy.input_dropout,
        aux_weight=preset.policy.aux_weight,
    )
    policy.fit_input_normalization(data.train.X)
    config = LearnerConfig(
        lr=preset.learner.lr,
        batch_size=preset.learner.batch_size,
        seed=seed,
        weight_decay=preset.learner.weight_decay,
        precision=precision,
    )
    learner = make_learner(args.learner, policy, data.train, config)
    rng = np.random.default_rng(seed)
    for _ in range(args.updates):
        learner.update(np.sort(rng.choice(len(data.train), preset.learner.batch_size, replace=False)))
    Y_pred, scores = predict(policy, data.test.X, max_steps=data.max_labels_per_doc + 1, precision=precision)
    metrics = evaluate(data.test.Y, scores=scores, Y_pred=Y_pred)
    return {m: float(metrics[m]) for m in METRICS}


def main(args: Args) -> dict:
    set_threads(args.threads or 1)  # benchmarks default to one thread (experiments.run.threads)
    print(f"bf16 native here: {bf16_native('cpu')} (else emulated: same numerics, not the speed)")
    results: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
    for seed in args.seeds:
        for precision in PRECISIONS:
            started = time.perf_counter()
            results[precision].append(run(args, seed, precision))
            shown = " ".join(f"{m} {v:.4f}" for m, v in results[precision][-1].items())
            print(f"seed {seed} {precision}: {shown} ({time.perf_counter() - started:.0f} s)", flush=True)
    summary = {}
    for metric in METRICS:
        fp32 = [r[metric] for r in results["fp32"]]
        bf16 = [r[metric] for r in results["bf16"]]
        sd = statistics.stdev(fp32) if len(fp32) > 1 else float("nan")
        diff = statistics.mean(bf16) - statistics.mean(fp32)
        summary[metric] = {
            "fp32_mean": statistics.mean(fp32),
            "fp32_sd": sd,
            "bf16_mean": statistics.mean(bf16),
            "bf16_sd": statistics.stdev(bf16) if len(bf16) > 1 else float("nan"),
            "diff": diff,
            "within_one_sd": abs(diff) <= sd,
        }
        s = summary[metric]
        print(
            f"{metric:10s} fp32 {s['fp32_mean']:.4f} ± {s['fp32_sd']:.4f}  bf16 {s['bf16_mean']:.4f} ± {s['bf16_sd']:.4f}"
            f"  diff {diff:+.4f}  {'within' if s['within_one_sd'] else 'OUTSIDE'} one fp32 seed sd"
        )
    out = {"args": args.__dict__, "per_seed": results, "summary": summary}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(parse_args(Args))

"""Label-steps per second of LabelChain: single env under SB3's DummyVecEnv vs the native vector env.

    python experiments/bench/bench_env.py --dataset delicious

One thread, random valid actions (STOP with probability 1 / (mean labels per document + 1), else a
uniformly drawn label not yet emitted). A label-step is one action applied to one document (the
native env's NEXT_STEP autoreset steps apply no action and are not counted). The native env runs
with its default ``copy=False`` (returns its own buffers); the ``native+copy`` row pays for fresh
arrays every step. Prints a table, then one
JSON line with every figure and the ratio native / best DummyVecEnv.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.threads import Threads, set_threads

from labelchain.envs.chain_task import make_task
from labelchain.envs.label_env import LabelChainEnv
from labelchain.envs.vector_env import LabelChainVectorEnv


@dataclass
class Args(Threads):
    """Benchmark LabelChain environments (label-steps per second, one thread)."""

    dataset: str = "delicious"
    split: str = "train"
    dummy_sizes: list[int] = field(default_factory=lambda: [8, 64])
    native_sizes: list[int] = field(default_factory=lambda: [64, 1024, 4096])
    seconds: float = field(default=3.0, metadata={"help": "wall time per configuration"})
    seed: int = 0


class RandomValidActions:
    """Draws a valid action per row of a mask without touching all L+1 entries of every row."""

    def __init__(self, n_labels: int, p_stop: float, seed: int) -> None:
        self.n_labels, self.p_stop = n_labels, p_stop
        self.rng = np.random.default_rng(seed)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        n: int = masks.shape[0]
        actions = self.rng.integers(self.n_labels, size=n)
        actions[self.rng.random(n) < self.p_stop] = self.n_labels
        rows = np.arange(n)
        bad = ~masks[rows, actions]
        while bad.any():  # redraw the few invalid draws; STOP is drawable so a row with every label
            # emitted (possible when L <= the step cap, e.g. emotions) ends instead of looping forever
            actions[bad] = self.rng.integers(self.n_labels + 1, size=int(bad.sum()))
            bad[bad] = ~masks[rows[bad], actions[bad]]
        return actions


def bench_dummy(task, n: int, seconds: float, sampler: RandomValidActions) -> float:
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: LabelChainEnv(task) for _ in range(n)])
    venv.seed(0)
    venv.reset()
    masks = np.stack(venv.env_method("action_masks"))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, _, infos = venv.step(sampler(masks))
        masks = np.stack([info["action_mask"] for info in infos])
        steps += n
    return steps / (time.perf_counter() - start)


def bench_native(task, n: int, seconds: float, sampler: RandomValidActions, copy: bool = False) -> float:
    venv = LabelChainVectorEnv(n, task, copy=copy)
    _, infos = venv.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        acting = ~venv.ended
        _, _, _, _, infos = venv.step(sampler(infos["action_mask"]))
        steps += int(acting.sum())
    return steps / (time.perf_counter() - start)


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    task = make_task(args.dataset, args.split)
    mean_labels = task.gold_count.mean()
    sampler = RandomValidActions(task.n_labels, 1.0 / (mean_labels + 1.0), args.seed)
    print(
        f"{args.dataset}/{args.split}: {task.n_docs} docs, {task.n_labels} labels, "
        f"{task.n_features} features, step cap {task.max_steps}, "
        f"{mean_labels:.2f} labels/doc"
    )
    rows = [("DummyVecEnv", n, bench_dummy(task, n, args.seconds, sampler)) for n in args.dummy_sizes]
    rows += [("native", n, bench_native(task, n, args.seconds, sampler)) for n in args.native_sizes]
    big = max(args.native_sizes)
    rows.append(("native+copy", big, bench_native(task, big, args.seconds, sampler, copy=True)))
    print(f"{'env':<12} {'N':>6} {'label-steps/s':>15}")
    for name, n, rate in rows:
        print(f"{name:<12} {n:>6} {rate:>15,.0f}")
    best_dummy = max((r for name, _, r in rows if name == "DummyVecEnv"), default=float("nan"))
    best_native = max((r for name, _, r in rows if name == "native"), default=float("nan"))
    result = {
        "dataset": args.dataset,
        "n_labels": task.n_labels,
        "steps_per_sec": {f"{name}_N{n}": round(rate) for name, n, rate in rows},
        "ratio_native_over_dummy": round(best_native / best_dummy, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args(Args))

"""How the chain scales with the number of labels, on synthetic label spaces (one thread).

    python experiments/bench/bench_scale.py                       # L = 1,000 / 10,000 / 100,000
    python experiments/bench/bench_scale.py --labels 1000 --updates 20 --no-write   # a quick look

For each L it builds ``synthetic-L{L}-s{seed}`` (envs.data.synthetic: hidden label tree, power-law
label frequencies; the same train/test sizes at every L) and measures, each cell in its own process
so that peak memory (``ru_maxrss``) is that cell's alone:

- ``flat`` (and each output layer in ``--outputs``): a freq2rare ChainPolicy trained by teacher
  forcing for ``--updates`` updates of ``--batch-size`` documents (training docs/s over those
  updates, after one untimed warm-up update), then greedy decoding of ``--decode-docs`` test documents
  with STOP suppressed for 5 steps, as `agents.decoding.predict` ranks (decoding docs/s), and P@1 of
  the first emitted label on the test split (quality after that fixed small budget);
- ``env``: label-steps/s of the native vector env (``--env-envs`` documents, random labels, STOP with
  probability 1 / (mean labels + 1)), without (``dense_masks=False``) and with the dense mask;
- ``omikuji``: Omikuji (default Parabel-like hyper-parameters, 1 tree, 1 thread) trained on the same
  train split: training seconds, and P@1 / P@5 / PSP@5 of its top 5 labels on the test split;
- ``prior`` (docs/prior-scale.md): the prior chain. Omikuji's out-of-fold scores
  (`agents.prior.build_prior`, peer omikuji at 1 tree, ``--prior-folds`` folds, top
  ``--prior-shortlist`` labels) as the prior of a flat ChainPolicy (`prior` ``--prior-mode``,
  shortlist M = ``--prior-shortlist``: each step scores M + 1 actions, agents.shortlist_step), trained
  by ``--prior-learner`` for ``--prior-updates`` updates; greedy decoding of every test document with
  STOP suppressed for 5 steps (the chain's labels in emission order, then by first-step probability):
  P@1 / P@5 / PSP@5, decoding docs/s of the chain alone and of matcher + chain (the matcher's top-M
  scoring timed on the same documents), and the dense O(L) step's decoding docs/s beside it.

Rates are per CPU-second of the cell's process (``time.process_time``, one thread), not per wall
second: on a machine shared with other jobs a process gets a varying slice of a core, and its CPU
time is what one free core would have needed. Cells can run in parallel (``--jobs``).

Prints a table, writes ``experiments/results/scale.{json,md}`` and the log-log plot
``analysis/figures/scale.png`` (unless ``--no-write``; table, plot and summary ratios are built in
experiments/reports/scale.py), and ends with one JSON line.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from labelchain.experiments.bench.scale_common import (
    RANK_K,
    Args,
    fill_ranked,
    first_label_precision,
    frequency_order,
    omikuji_top,
    peak_rss_mb,
    ranked_metrics,
    synthetic_data,
)
from labelchain.experiments.bench.scale_prior import prior_cell
from labelchain.experiments.grid.results_file import ResultsFile, load_results, save_results
from labelchain.experiments.run.common import REPO_ROOT, atomic_write_text, command_line, parse_args
from labelchain.experiments.reports.scale import plot, summary, table
from labelchain.experiments.run.threads import set_threads

KINDS_BESIDE_OUTPUTS = ("env", "omikuji", "prior")


def build_policy(kind: str, data, args: Args) -> tuple:
    """The chain policy with output layer `kind` and the seconds spent building its label tree.

    'flat': today's Linear(hidden + doc, L + 1). 'tree': PIFA label embeddings of the training split,
    a balanced spherical k-means tree (``--tree-branching``, ``--tree-leaf-size``), beam ``--tree-beam``.
    """
    from labelchain.agents import policy_factory
    from labelchain.agents.output_layers import OUTPUT_KINDS
    from labelchain.agents.policy_config import PolicyConfig

    if kind not in OUTPUT_KINDS:
        raise ValueError(f"--outputs: unknown output layer {kind!r}; choose from {OUTPUT_KINDS}")
    tree, tree_seconds = None, 0.0
    if kind == "tree":
        started = time.process_time()
        tree = policy_factory.label_tree(
            data.train, data.n_features, args.tree_branching, args.tree_leaf_size, seed=args.seed
        )
        tree_seconds = time.process_time() - started
    config = PolicyConfig(
        data.n_features,
        data.n_labels,
        hidden_size=args.hidden_size,
        output=kind,
        tree=tree,
        tree_beam=args.tree_beam,
        sparse_label_grads=args.sparse_label_grads and kind == "tree",
    )
    return policy_factory.build_policy(config, None), tree_seconds  # unnormalised inputs, as timed before


def chain_cell(kind: str, n_labels: int, args: Args) -> dict:
    import torch

    from labelchain.agents.decoding import greedy_decode
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import make_learner

    data = synthetic_data(args, n_labels)
    data_mb = peak_rss_mb()
    torch.manual_seed(args.seed)
    policy, tree_seconds = build_policy(kind, data, args)
    learner = make_learner("freq2rare", policy, data.train, LearnerConfig(batch_size=args.batch_size, seed=args.seed))
    rng = np.random.default_rng(args.seed)

    def batch() -> np.ndarray:
        return np.sort(rng.choice(len(data.train), size=args.batch_size, replace=False))

    learner.update(batch())  # warm-up: first-touch allocations and lazy initialisation
    started = time.process_time()
    for _ in range(args.updates):
        learner.update(batch())
    train_seconds = time.process_time() - started
    policy.eval()
    X_test = data.test.X
    n_decode = min(args.decode_docs, X_test.shape[0])
    with torch.no_grad():
        started = time.process_time()
        for begin in range(0, n_decode, args.decode_batch_size):
            greedy_decode(policy, X_test[begin : min(begin + args.decode_batch_size, n_decode)], suppress_stop_steps=5)
        decode_seconds = time.process_time() - started
        first = np.concatenate(
            [
                greedy_decode(
                    policy, X_test[begin : begin + args.decode_batch_size], max_steps=1, suppress_stop_steps=1
                )
                .labels[:, 0]
                .numpy()
                for begin in range(0, X_test.shape[0], args.decode_batch_size)
            ]
        )
    return {
        "train_docs_per_s": args.updates * args.batch_size / train_seconds,
        "decode_docs_per_s": n_decode / decode_seconds,
        "P@1": first_label_precision(data.test.Y, first),
        "parameters": int(sum(p.numel() for p in policy.parameters())),
        "tree_build_s": tree_seconds,
        "sparse_label_grads": bool(policy.sparse_parameters()),
        "data_rss_mb": data_mb,
        "peak_rss_mb": peak_rss_mb(),
    }


def env_rate(task, args: Args, dense_masks: bool) -> float:
    from labelchain.envs.vector_env import LabelChainVectorEnv

    env = LabelChainVectorEnv(args.env_envs, task, dense_masks=dense_masks)
    env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    p_stop = 1.0 / (task.gold_count.mean() + 1.0)
    steps, started = 0, time.process_time()
    while time.process_time() - started < args.env_seconds:
        actions = rng.integers(task.n_labels, size=args.env_envs)
        actions[rng.random(args.env_envs) < p_stop] = task.stop_action
        acting = ~env.ended
        env.step(actions)
        steps += int(acting.sum())
    return steps / (time.process_time() - started)


def env_cell(n_labels: int, args: Args) -> dict:
    from labelchain.envs.chain_task import make_task

    task = make_task(synthetic_data(args, n_labels), "train")
    sparse = env_rate(task, args, dense_masks=False)
    sparse_mb = peak_rss_mb()
    return {
        "env_steps_per_s": sparse,
        "env_rss_mb": sparse_mb,
        "env_dense_mask_steps_per_s": env_rate(task, args, dense_masks=True),
        "peak_rss_mb": peak_rss_mb(),
    }


def omikuji_cell(n_labels: int, args: Args) -> dict:
    import tempfile

    from labelchain.envs.data.textformats import write_xc
    from labelchain.agents.peers import import_omikuji, native_output_to

    omikuji = import_omikuji()
    data = synthetic_data(args, n_labels)
    hyper = omikuji.Model.default_hyper_param()
    hyper.n_trees = 1
    with tempfile.TemporaryDirectory(prefix="labelchain-omikuji-") as folder:
        path = Path(folder) / "train.txt"
        write_xc(path, data.train.X, data.train.Y)
        started = time.process_time()
        with native_output_to(Path(folder) / "omikuji.log"):
            model = omikuji.Model.train_on_data(str(path), hyper, n_threads=1)
        fit_seconds = time.process_time() - started
    model.init_prediction_thread_pool(1)
    started = time.process_time()
    ranked = omikuji_top(model, data.test.X, RANK_K)
    predict_seconds = time.process_time() - started
    metrics = ranked_metrics(data.train.Y, data.test.Y, fill_ranked(ranked, frequency_order(data.train.Y)))
    return {
        "omikuji_train_s": fit_seconds,
        **{f"omikuji_{key}": value for key, value in metrics.items()},
        "omikuji_decode_docs_per_s": data.test.X.shape[0] / predict_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_cell(cell: str, args: Args) -> dict:
    n_labels, kind = cell.split(":")
    set_threads(args.threads or 1)
    if kind == "env":
        return env_cell(int(n_labels), args)
    if kind == "omikuji":
        return omikuji_cell(int(n_labels), args)
    if kind == "prior":
        return prior_cell(int(n_labels), args)
    return chain_cell(kind, int(n_labels), args)


def spawn(cell: str, args: Args) -> dict:
    """Run one cell in a fresh interpreter (its own peak memory) and read its last JSON line."""
    flags = shlex.split(command_line(Args(**{**asdict(args), "cell": cell}), "x"))[2:]
    argv = [sys.executable, "-m", "labelchain.experiments.bench.bench_scale", *flags]  # cwd = repo root: importable
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cell {cell} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: Args) -> dict:
    if args.cell is not None:
        result = run_cell(args.cell, args)
        print(json.dumps(result))
        return result
    kinds = (list(args.outputs) if args.chains else []) + [kind for kind in KINDS_BESIDE_OUTPUTS if getattr(args, kind)]
    cells = [(str(n), kind) for n in sorted(args.labels, reverse=True) for kind in kinds]  # long ones first
    results: dict[str, dict] = {str(n): {} for n in args.labels}

    def one(cell: tuple[str, str]) -> None:
        started = time.perf_counter()
        results[cell[0]][cell[1]] = spawn(":".join(cell), args)
        print(
            f"L={int(cell[0]):,} {cell[1]}: {time.perf_counter() - started:.0f} s wall "
            f"{json.dumps(results[cell[0]][cell[1]])}",
            file=sys.stderr,
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # cells are processes: CPU time is theirs
        list(pool.map(one, cells))
    command = command_line(args, "experiments/bench/bench_scale.py", skip=("cell",))
    commands = [command]
    path = REPO_ROOT / "experiments" / "results" / "scale.json"
    if args.update and path.exists():  # with --labels none: only re-render the saved results
        previous = load_results(path, "scale").payload()
        commands = previous.get("commands", [previous.get("command")]) + ([command] if cells else [])
        merged = previous["results"]
        for n_labels, measured in results.items():
            merged.setdefault(n_labels, {}).update(measured)
        results = dict(sorted(merged.items(), key=lambda item: int(item[0])))
        args = replace(args, outputs=sorted({*previous["args"]["outputs"], *args.outputs}, key=["flat", "tree"].index))
    text = table(results, args.outputs)
    print(text)
    payload = {
        "command": command,
        "commands": commands,
        "args": asdict(args),
        "results": results,
        "summary": summary(results, args.outputs),
    }
    if args.write:
        out = REPO_ROOT / "experiments" / "results"
        save_results(out / "scale.json", ResultsFile.from_payload(payload, "scale"))
        made_by = "\n".join(f"`{c}`" for c in commands)
        atomic_write_text(
            out / "scale.md",
            f"# Scale benchmark (synthetic label spaces)\n\n"
            f"{made_by}\n\n{text}\n\nRates are per CPU-second of one thread (the machine was "
            f"shared); '-' = not run by the commands above.\n\n"
            f"Summary: `{json.dumps(payload['summary'])}`\n",
        )
        plot(results, args.outputs, REPO_ROOT / "analysis" / "figures" / "scale.png")
    print(json.dumps({"summary": payload["summary"], "results": results}))
    return payload


if __name__ == "__main__":
    main(parse_args(Args))

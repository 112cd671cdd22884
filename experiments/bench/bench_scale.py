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
import resource
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar
from pathlib import Path

import numpy as np

from labelchain.envs.data.synthetic import make_synthetic
from labelchain.experiments.grid.results_file import ResultsFile, load_results, save_results
from labelchain.experiments.run.common import (
    REPO_ROOT,
    Renames,
    atomic_write_text,
    command_line,
    parse_args,
)
from labelchain.experiments.reports.scale import plot, summary, table
from labelchain.experiments.run.threads import Threads, set_threads

KINDS_BESIDE_OUTPUTS = ("env", "omikuji", "prior")
RANK_K = 5  # P@5 and PSP@5


@dataclass
class Args(Threads):
    """Scale benchmark of the label chain on synthetic label spaces (one thread, each cell its own process)."""

    RENAMED: ClassVar[Renames] = {"budget_updates": "updates", "decode_batch": "decode_batch_size"}  # issue 20

    labels: list[int] = field(default_factory=lambda: [1000, 10000, 100000])
    outputs: list[str] = field(default_factory=lambda: ["flat", "tree"])
    n_features: int = field(default=16384, metadata={"help": "the same at every L, so only L varies"})
    train_docs: int = 20000
    test_docs: int = 2000
    hidden_size: int = 256
    tree_branching: int = 16
    tree_leaf_size: int = 100
    tree_beam: int = 10
    sparse_label_grads: bool = field(
        default=True,
        metadata={"help": "tree cells: sparse gradients and lazy Adam for the label tables (agents.optim)"},
    )
    batch_size: int = 64
    updates: int = field(default=10, metadata={"help": "teacher-forcing updates per cell"})
    decode_docs: int = 200
    decode_batch_size: int = 256
    env_envs: int = 1024
    env_seconds: float = 3.0
    chains: bool = field(
        default=True, metadata={"help": "the --outputs chain cells (--no-chains: e.g. prior rows only)"}
    )
    omikuji: bool = True
    env: bool = True
    prior: bool = field(default=True, metadata={"help": "the prior-chain cell (Omikuji's scores as the prior)"})
    prior_shortlist: int = field(default=100, metadata={"help": "prior cell: shortlist M (and top-M stored)"})
    prior_folds: int = field(default=3, metadata={"help": "prior cell: out-of-fold folds over the training split"})
    prior_updates: int = field(default=300, metadata={"help": "prior cell: training updates of --batch-size"})
    prior_learner: str = field(default="rearrange", metadata={"help": "prior cell: the learner (agents.learners)"})
    prior_mode: str = field(default="shared", metadata={"help": "prior cell: 'shared' or 'per_label' (a, b)"})
    update: bool = field(
        default=False, metadata={"help": "replace only this run's cells in an existing results/scale.json"}
    )
    seed: int = 0
    jobs: int = field(
        default=1,
        metadata={"help": "cells run at once (rates are per CPU-second, so parallel cells do not distort them much)"},
    )
    write: bool = field(default=True, metadata={"help": "write results/scale.{json,md} and the plot"})
    cell: str | None = field(default=None, metadata={"help": "internal: run one 'L:kind' cell"})


def synthetic_data(args: Args, n_labels: int):
    return make_synthetic(
        n_labels, args.seed, n_train=args.train_docs, n_test=args.test_docs, n_features=args.n_features
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def first_label_precision(Y, first: np.ndarray) -> float:
    """P@1 of one predicted label per document (-1 = none): the share of documents where it is gold."""
    hit = np.zeros(len(first), dtype=bool)
    has = first >= 0
    hit[has] = np.asarray(Y[np.flatnonzero(has), first[has]]).ravel()
    return float(hit.mean())


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


def fill_ranked(ranked: list[list[int]], fallback: np.ndarray, k: int = RANK_K) -> np.ndarray:
    """(n, k) label ids: each row's ranked labels, then the `fallback` labels (training frequency order)
    it does not hold yet, so the metrics always read k distinct labels."""
    out = np.empty((len(ranked), k), dtype=np.int64)
    for row, labels in enumerate(ranked):
        head = list(dict.fromkeys(labels))[:k]
        extra = [label for label in fallback[: 2 * k].tolist() if label not in head]
        out[row] = (head + extra)[:k]
    return out


def ranked_metrics(train_Y, test_Y, ranked: np.ndarray) -> dict:
    """P@1, P@5 and PSP@5 (Jain et al.'s propensities from the training label counts) of rankings (n, 5)."""
    import scipy.sparse as sp

    from labelchain.envs.metric_core import gold_hits
    from labelchain.envs.tail_metrics import propensity, propensity_scores

    gold = sp.csr_matrix(test_Y, dtype=bool)
    gold.sort_indices()
    hits = gold_hits(gold, ranked)
    counts = np.asarray(sp.csr_matrix(train_Y).sum(axis=0)).ravel()
    inv_p = 1.0 / propensity(counts, train_Y.shape[0])
    return {
        "P@1": float(hits[:, 0].mean()),
        "P@5": float(hits[:, :RANK_K].sum(axis=1).mean() / RANK_K),
        "PSP@5": propensity_scores(gold, ranked, inv_p, RANK_K, normalized=False)[0],
    }


def frequency_order(Y) -> np.ndarray:
    """Label ids by descending training frequency (ties to the lower id)."""
    import scipy.sparse as sp

    counts = np.asarray(sp.csr_matrix(Y).sum(axis=0)).ravel()
    return np.argsort(-counts, kind="stable")


def chain_ranking(result, n_labels: int) -> list[list[int]]:
    """Each document's labels in emission order, then the others its first step gave probability to,
    by that probability (position scores, `agents.decoding`, without a dense (B, L) matrix)."""
    labels = result.labels.numpy()
    first = result.first_probs.coalesce() if result.first_probs.is_sparse else result.first_probs.to_sparse()
    index, values = first.indices().numpy(), first.values().numpy()
    order = np.lexsort((-values, index[0]))
    by_row = np.split(index[1][order], np.searchsorted(index[0][order], np.arange(1, labels.shape[0])))
    return [[int(x) for x in row if x >= 0] + by_row[i].tolist() for i, row in enumerate(labels)]


def prior_cell(n_labels: int, args: Args) -> dict:
    """The prior chain (see the module docstring): Omikuji's out-of-fold prior, a shortlisting flat chain."""
    import scipy.sparse as sp
    import torch

    from labelchain.agents import policy_factory
    from labelchain.agents.decoding import greedy_decode
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import make_learner
    from labelchain.agents.peers import OmikujiTree
    from labelchain.agents.policy_config import PolicyConfig
    from labelchain.agents import prior as prior_module
    from labelchain.agents.prior import build_prior, recall_at
    from labelchain.agents.prior_columns import prior_columns, with_prior_columns
    from labelchain.agents.supervised import carve_validation
    from labelchain.envs.data.dataset import Split
    from labelchain.envs.shortlist import shortlist_from_scores

    data = synthetic_data(args, n_labels)
    m = args.prior_shortlist
    # agents.prior scores ROW_CHUNK documents as one dense (chunk x L) block: keep it near 200 MB
    prior_module.ROW_CHUNK = int(min(prior_module.ROW_CHUNK, max(64, 50_000_000 // n_labels)))
    started = time.process_time()
    omikuji = ({"n_trees": 1, "cluster_k": 2},)  # the Omikuji row's hyper-parameters
    prior = build_prior(
        "omikuji", data, seed=args.seed, folds=args.prior_folds, top_m_size=m, grid=omikuji
    )  # val_fraction 0.1: the chain trains on the other 90%
    prior_seconds = time.process_time() - started
    train, _ = carve_validation(data.train, 0.1, args.seed)
    shortlist = shortlist_from_scores(prior.train, m)
    train_Y = sp.csr_matrix(train.Y.multiply(shortlist), dtype=train.Y.dtype)  # the matcher's recall loss
    train = Split(with_prior_columns(train.X, prior_columns(prior.train, m)), train_Y)
    X_test = with_prior_columns(data.test.X, prior_columns(prior.test, m))
    # the matcher's own test-time cost: the same peer's top-M scoring of the test documents, timed
    matcher = OmikujiTree(n_trees=1, cluster_k=2, top_k=m, beam_size=max(m, 10)).fit(
        carve_validation(data.train, 0.1, args.seed)[0]
    )
    started = time.process_time()  # its scaling and top-M predictions, as `prior.test` was made
    omikuji_top(matcher.model, matcher.scaler.transform(data.test.X), m, max(m, 10))
    matcher_seconds = time.process_time() - started

    torch.manual_seed(args.seed)
    config = PolicyConfig(
        data.n_features, data.n_labels, hidden_size=args.hidden_size, prior=args.prior_mode, shortlist=True
    )
    policy = policy_factory.build_policy(config, None)
    learner = make_learner(
        args.prior_learner,
        policy,
        train,
        LearnerConfig(batch_size=args.batch_size, seed=args.seed, greedy_charts=False),
    )
    rng = np.random.default_rng(args.seed)

    def batch() -> np.ndarray:
        return np.sort(rng.choice(len(train), size=args.batch_size, replace=False))

    learner.update(batch())  # warm-up
    started = time.process_time()
    for _ in range(args.prior_updates):
        learner.update(batch())
    train_seconds = time.process_time() - started
    policy.eval()
    fallback = frequency_order(data.train.Y)
    ranked: list[list[int]] = []
    with torch.no_grad():
        started = time.process_time()
        for begin in range(0, X_test.shape[0], args.decode_batch_size):
            result = greedy_decode(policy, X_test[begin : begin + args.decode_batch_size], suppress_stop_steps=RANK_K)
            ranked += chain_ranking(result, n_labels)
        decode_seconds = time.process_time() - started
        n_dense = min(args.decode_docs, X_test.shape[0])
        started = time.process_time()
        for begin in range(0, n_dense, args.decode_batch_size):
            rows = X_test[begin : min(begin + args.decode_batch_size, n_dense)]
            greedy_decode(policy, rows, suppress_stop_steps=RANK_K, compact=False)
        dense_seconds = time.process_time() - started
    chain = ranked_metrics(data.train.Y, data.test.Y, fill_ranked(ranked, fallback))
    prior_rank = [
        prior.test.indices[lo:hi][np.argsort(-prior.test.data[lo:hi], kind="stable")].tolist()
        for lo, hi in zip(prior.test.indptr[:-1], prior.test.indptr[1:])
    ]
    alone = ranked_metrics(data.train.Y, data.test.Y, fill_ranked(prior_rank, fallback))
    n_test = X_test.shape[0]
    chain_rate, matcher_rate = n_test / decode_seconds, n_test / matcher_seconds
    return {
        **chain,
        "prior_alone_P@1": alone["P@1"],
        "prior_alone_P@5": alone["P@5"],
        "prior_alone_PSP@5": alone["PSP@5"],
        "recall_at_M": recall_at(prior.test, data.test.Y, m),
        "train_docs_per_s": args.prior_updates * args.batch_size / train_seconds,
        "decode_docs_per_s": chain_rate,
        "matcher_docs_per_s": matcher_rate,
        "pipeline_decode_docs_per_s": 1.0 / (1.0 / chain_rate + 1.0 / matcher_rate),
        "dense_decode_docs_per_s": n_dense / dense_seconds,
        "prior_build_s": prior_seconds,
        "shortlist": m,
        "folds": args.prior_folds,
        "updates": args.prior_updates,
        "learner": args.prior_learner,
        "prior_mode": args.prior_mode,
        "parameters": int(sum(p.numel() for p in policy.parameters())),
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


def omikuji_top(model, X, top_k: int, beam_size: int | None = None) -> list[list[int]]:
    """Each row's top `top_k` labels from an Omikuji model, one document at a time (beam: its default)."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    beam = {} if beam_size is None else {"beam_size": beam_size}
    ranked = []
    for row in range(X.shape[0]):
        lo, hi = X.indptr[row], X.indptr[row + 1]
        top = model.predict(list(zip(X.indices[lo:hi].tolist(), X.data[lo:hi].tolist())), top_k=top_k, **beam)
        ranked.append([label for label, _ in top])
    return ranked


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

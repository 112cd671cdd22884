"""Peak memory of the prior chain's two large-L steps, each rule in its own process, beside the old rule.

    python experiments/bench/bench_prior_memory.py                      # L = 100,000, 1,000 documents
    python experiments/bench/bench_prior_memory.py --n-docs 18000 --rules new   # the scale cell's training split

Synthetic inputs (seeded): `--n-docs` documents, each with `--text-nnz` random text features out of
`--n-features` and a random top-`--top-m` prior over `--n-labels` labels (as bench_scale's prior cell
has them, docs/prior-scale.md). Steps and rules:

- ``shortlist``: the shortlist a shortlisting learner builds over its whole training split
  (`agents.prior_columns.shortlist_in_columns`, called by agents.learner_base). ``new``: the sparse
  rule; ``old``: the rule before it (the prior columns as a dense (n, L) float32 block, copied by
  ``astype``, then ``> 0``).
- ``score``: `agents.prior.score_top_m` of the documents by a peer whose scores are a dense
  (chunk x L) float32 block (agents.peers.LabelFrequency: the shape Omikuji's and OvR's scores have).
  ``new``: chunks from the memory budget (`agents.prior.score_chunk_rows`); ``old``: agents.prior's
  fixed 2,048-document chunk before it; ``bench``: the 500-document chunk bench_scale forced at
  L = 100,000 (min(2048, max(64, 50,000,000 // L))).

Each (step, rule) runs in a fresh interpreter and reports "step MB", the peak of the memory the step
itself allocated (tracemalloc, started after the inputs are built: numpy and scipy arrays are
traced), and the process's peak RSS (``ru_maxrss``, inputs and interpreter included). The rules of
a step must give the same matrix (checked on a 200-document slice in the parent). Prints a table and
one JSON line.
"""

from __future__ import annotations

import json
import resource
import shlex
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from labelchain.agents.peers import LabelFrequency
from labelchain.agents.prior import score_chunk_rows, score_top_m
from labelchain.agents.prior_columns import prior_columns, shortlist_in_columns, with_prior_columns
from labelchain.envs.data.dataset import Split
from labelchain.experiments.run.common import command_line, parse_args
from labelchain.experiments.run.threads import Threads, set_threads

RULES = {"shortlist": ("old", "new"), "score": ("old", "bench", "new")}


@dataclass
class Args(Threads):
    """Peak memory of the prior path's large-L steps (shortlist, scoring), new rule beside the old."""

    n_labels: int = 100_000
    n_docs: int = 1000
    n_features: int = 16384
    text_nnz: int = 50
    top_m: int = 100
    seed: int = 0
    steps: list[str] = field(default_factory=lambda: ["shortlist", "score"], metadata={"help": f"from {list(RULES)}"})
    rules: list[str] = field(
        default_factory=lambda: ["old", "bench", "new"],
        metadata={"help": "the rules to measure (new always; e.g. --rules new at a size the old rule cannot hold)"},
    )
    run: str | None = field(default=None, metadata={"help": "internal: run one 'step:rule' in this process"})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def inputs(args: Args, docs: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(text features, top-M prior scores in the chain's units) of `docs` synthetic documents."""
    rng = np.random.default_rng(args.seed)
    text_cols = np.sort(rng.integers(0, args.n_features, size=(docs, args.text_nnz)), axis=1)
    text = sp.csr_matrix(
        (
            rng.random(text_cols.size, dtype=np.float32),
            text_cols.ravel(),
            np.arange(0, text_cols.size + 1, args.text_nnz),
        ),
        shape=(docs, args.n_features),
    )
    text.sum_duplicates()
    labels = np.stack([np.sort(rng.choice(args.n_labels, size=args.top_m, replace=False)) for _ in range(docs)])
    scores = sp.csr_matrix(
        (-10.0 * rng.random(labels.size, dtype=np.float32), labels.ravel(), np.arange(0, labels.size + 1, args.top_m)),
        shape=(docs, args.n_labels),
    )
    return text, scores


def old_shortlist(X: sp.csr_matrix, n_features: int) -> sp.csr_matrix:
    """The rule before: the prior columns as a dense (n, L) block (copied by astype), then > 0."""
    return sp.csr_matrix(sp.csr_matrix(X)[:, n_features:].toarray().astype(np.float32) > 0)


def peer(args: Args, docs: int) -> LabelFrequency:
    rng = np.random.default_rng(args.seed + 1)
    Y = sp.csr_matrix(rng.random((64, args.n_labels)) < 0.01)
    return LabelFrequency().fit(Split(sp.csr_matrix((64, 1), dtype=np.float32), Y))


def run_step(args: Args, step: str, rule: str, docs: int) -> tuple[sp.csr_matrix, float]:
    text, scores = inputs(args, docs)
    if step == "shortlist":
        X = with_prior_columns(text, prior_columns(scores, args.top_m))
        del scores
        tracemalloc.start()
        out = (
            old_shortlist(X, args.n_features)
            if rule == "old"
            else shortlist_in_columns(X, args.n_features, args.n_labels)
        )
    else:
        scorer = peer(args, docs)
        chunk = {"old": 2048, "bench": int(min(2048, max(64, 50_000_000 // args.n_labels))), "new": None}[rule]
        tracemalloc.start()
        out = score_top_m(scorer, text, "log_score", args.top_m, n_labels=args.n_labels, chunk_rows=chunk)
    step_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, step_mb


def measure(args: Args, step: str, rule: str) -> dict:
    """One (step, rule) in a fresh interpreter: the step's own peak and the process's peak RSS, in MB."""
    flags = shlex.split(command_line(args, "x"))[2:]
    done = subprocess.run(
        [sys.executable, __file__, *flags, "--run", f"{step}:{rule}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{step}:{rule} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    if args.run is not None:
        step, rule = args.run.split(":")
        _, step_mb = run_step(args, step, rule, args.n_docs)
        result = {"step_mb": step_mb, "peak_rss_mb": rss_mb()}
        print(json.dumps(result))
        return result
    for step in args.steps:  # the rules of a step give one matrix (a small slice, in this process)
        small = [run_step(args, step, rule, min(args.n_docs, 200))[0] for rule in RULES[step]]
        for other in small[1:]:
            assert (other != small[0]).nnz == 0, f"{step}: the rules disagree"
    print(
        f"L = {args.n_labels:,}, {args.n_docs:,} documents, top {args.top_m}; "
        f"score chunk (new): {score_chunk_rows(args.n_labels)} documents"
    )
    print("| step | rule | step MB | step / new | process peak RSS MB |\n|---|---|---|---|---|")
    results: dict[str, dict] = {}
    for step in args.steps:
        rules = [rule for rule in RULES[step] if rule in args.rules or rule == "new"]
        results[step] = {rule: measure(args, step, rule) for rule in rules}
        new = max(results[step]["new"]["step_mb"], 0.1)
        for rule, r in results[step].items():
            print(f"| {step} | {rule} | {r['step_mb']:.1f} | {r['step_mb'] / new:.1f}x | {r['peak_rss_mb']:.0f} |")
    print(
        json.dumps(
            {
                "command": command_line(args, "experiments/bench/bench_prior_memory.py", skip=("run",)),
                "results": results,
            }
        )
    )
    return results


if __name__ == "__main__":
    main(parse_args(Args))

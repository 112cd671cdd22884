"""Matcher recall@M: how many gold test labels a peer's top-M shortlist keeps, per dataset.

    python experiments/prior_recall.py                      # the nine shared datasets, seed 0
    python experiments/prior_recall.py --datasets emotions scene --peers ovr_logistic

A chain restricted to a shortlist of each document's M best peer labels (issue 16's matcher ->
ranker design) can never emit a gold label outside it, so recall@M is the ceiling of its recall.
Each peer is tuned as agents.peers.tune_peer does (on the chains' validation slice, same seed),
then scores the test split; recall@M = gold test labels inside each document's top-M (ties to the
lower label id), summed over documents / all gold test labels (micro). M runs over --m, capped at
the label count. Omikuji returns only top_k labels from the leaves its beam reaches: it is asked
with top_k = beam = max(--m) (at least 10), as agents.prior does; labels never seen in training
are never returned.

Datasets are written one at a time into prior_recall.json (atomic) and prior_recall.md is rebuilt
from it, so a stopped run resumes: a (dataset, peer) already in the file with the same settings is
skipped. Cheap datasets first by default.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labelchain.experiments.grid.results_file import ResultsFile, load_results, save_results
from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.agents.peers import PeerUnavailable, tune_peer
from labelchain.agents.prior import PRIOR_PEERS, SCORE_KINDS, _with_top_k, recall_at, score_top_m
from labelchain.agents.supervised import carve_validation
from labelchain.envs.data.loading import load_dataset
from labelchain.experiments.run.common import (
    atomic_write_text,
    command_line,
    parse_args,
)

SCRIPT = "experiments/prior_recall.py"
NINE = ["emotions", "scene", "yeast", "medical", "enron", "bibtex", "corel5k", "reuters21578", "delicious"]


@dataclass
class Args(Threads):
    """Matcher recall@M of the tuned peers on the test split (micro), one seed."""

    datasets: list[str] = field(default_factory=lambda: list(NINE))
    peers: list[str] = field(default_factory=lambda: list(PRIOR_PEERS), metadata={"help": f"from {PRIOR_PEERS}"})
    m: list[int] = field(default_factory=lambda: [10, 20, 50, 100], metadata={"help": "shortlist sizes"})
    seed: int = 0
    val_fraction: float = 0.1
    data_dir: str | None = None
    out_dir: str = "experiments/results"


def measure(name: str, dataset: str, args: Args) -> dict[str, Any]:
    """One (dataset, peer) row: recall@M for every M (capped at L), the tuned settings and timings."""
    ds = load_dataset(dataset, data_dir=args.data_dir)
    train, val = carve_validation(ds.train, args.val_fraction, args.seed)
    started = time.perf_counter()
    tuned = tune_peer(name, train, val, seed=args.seed)
    tuned_at = time.perf_counter()
    largest = min(max(args.m), ds.n_labels)
    scorer = _with_top_k(tuned.scorer, largest)
    scores = score_top_m(scorer, ds.test.X, SCORE_KINDS[name], largest, n_labels=ds.n_labels)
    recall = {str(m): recall_at(scores, ds.test.Y, min(m, ds.n_labels)) for m in args.m}
    return {
        "dataset": dataset,
        "peer": name,
        "seed": args.seed,
        "n_labels": ds.n_labels,
        "n_test": len(ds.test),
        "gold_test_labels": int(ds.test.Y.nnz),
        "recall": recall,
        "hyper": tuned.hyper,
        "settings": settings(args, name),
        "tune_time_s": tuned_at - started,
        "score_time_s": time.perf_counter() - tuned_at,
    }


def settings(args: Args, peer: str) -> dict[str, Any]:
    extra = {"omikuji_top_k_and_beam": "max(M), at least 10"} if peer == "omikuji" else {}
    return {"m": list(args.m), "seed": args.seed, "val_fraction": args.val_fraction, **extra}


def render_markdown(results: dict[str, Any]) -> str:
    ms = results["args"]["m"]
    lines = [
        "# Matcher recall@M (test split)",
        "",
        f"Made by: `{results['command']}`",
        "",
        "Gold test labels inside each document's top-M peer labels / all gold test labels (micro), ×100; "
        "M capped at the label count L (a capped cell shows recall at L). Peers tuned on the chains' "
        "validation slice as agents.peers.tune_peer does (seed "
        f"{results['args']['seed']}, {results['args']['val_fraction']} of train held out). Omikuji "
        "is asked with top_k = beam = max(M) (at least 10) and never returns a label absent from "
        "training, so its recall can stay below 100 at M = L (OvR ranks every label). "
        "tune s: the peer's hyper-parameter search on validation (one thread).",
        "",
        "| dataset | L | peer | " + " | ".join(f"R@{m}" for m in ms) + " | tune s |",
        "|---|---|---|" + "---|" * (len(ms) + 1),
    ]
    for row in results["rows"]:
        cells = " | ".join(f"{100 * row['recall'][str(m)]:.2f}" for m in ms)
        lines.append(f"| {row['dataset']} | {row['n_labels']} | {row['peer']} | {cells} | {row['tune_time_s']:.0f} |")
    skipped = results.get("skipped", [])
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{s['dataset']} {s['peer']} ({s['reason']})" for s in skipped)]
    return "\n".join(lines) + "\n"


def main(args: Args) -> Path:
    set_threads(args.threads)
    unknown = [name for name in args.peers if name not in PRIOR_PEERS]
    if unknown or not args.m or min(args.m) < 1:
        raise SystemExit(f"error: --peers from {PRIOR_PEERS} and --m whole numbers >= 1, got {args.peers} / {args.m}")
    out = Path(args.out_dir)
    path = out / "prior_recall.json"
    results = load_results(path, "prior_recall", missing_ok=True).payload()
    results.setdefault("skipped", [])
    results.update(command=command_line(args, SCRIPT), args=asdict(args))
    for dataset in args.datasets:
        for name in args.peers:
            done = [r for r in results["rows"] if (r["dataset"], r["peer"]) == (dataset, name)]
            if done and done[0]["settings"] == settings(args, name):
                continue
            try:
                row = measure(name, dataset, args)
            except PeerUnavailable as note:
                results["skipped"].append({"dataset": dataset, "peer": name, "reason": str(note)})
                continue
            results["rows"] = [r for r in results["rows"] if (r["dataset"], r["peer"]) != (dataset, name)] + [row]
            order = {d: i for i, d in enumerate(args.datasets)}
            results["rows"].sort(key=lambda r: (order.get(r["dataset"], len(order)), r["dataset"], r["peer"]))
            save_results(path, ResultsFile.from_payload(results, "prior_recall"))
            atomic_write_text(out / "prior_recall.md", render_markdown(results))
            recall = ", ".join(f"R@{m} {100 * v:.1f}" for m, v in row["recall"].items())
            print(f"{dataset} {name}: {recall} (tune {row['tune_time_s']:.0f} s)", flush=True)
    return path


if __name__ == "__main__":
    from labelchain.experiments.run.folder import run_script

    run_script(lambda: main(parse_args(Args)))

"""Cluster guidance on real data: the results table of issue 9 (XLGen's BCL and MCG, overlapping
clusters, tail labels, partial labels).

    python experiments/compare_guidance.py                       # bibtex corel5k delicious x seeds 0 1 2
    python experiments/compare_guidance.py --datasets delicious --guidance bcl mcg --lambdas 1 2 3
    python experiments/compare_guidance.py --datasets bibtex --guidance bcl mcg --clusters 8
    python experiments/compare_guidance.py --datasets bibtex --hide-train-labels 0.5
    python experiments/compare_guidance.py --datasets emotions --seeds 0 --rearrange-epochs 1 \
        --combined-epochs 1 --clusters 3 --out-dir none             # a smoke test

The grid is experiments/grid/variants.py's (rearrange, combined, their ensemble; best epoch on
validation; rows merged into ``{out-dir}/guidance.json`` with the table rebuilt). Variants, in the method's name:
``+bcl`` / ``+mcg`` (guidance; none = no suffix), ``+c8`` (``--clusters`` other than XLGen's 30),
``+lambda2`` (each label in up to λ clusters: label disentanglement, envs.label_overlap, from the
λ = 1 rearrangement policy's predicted clusters of the training documents; λ = 1 is the plain
k-means clustering), ``+pu50`` (``--hide-train-labels 0.5``: that share of each training
document's labels hidden, seeded; test keeps all). Clusters: k-means (seeded) on the PIFA embeddings
of the cell's training split. Columns add PSP@k and the few-shot buckets' F1 (envs.tail_metrics:
0-shot = labels unseen in training that occur in test; 1-shot, <=5-shot = labels with 1 / 1..5
training documents) to the orderings table's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from labelchain.experiments.run.folder import run_script
from labelchain.agents.config import DEFAULTS as D
from labelchain.experiments.run.config import precision_problems
from labelchain.experiments.run.common import Renames, command_line, out_to_out_dir, parse_args

from labelchain.agents.guidance import with_gold_clusters
from labelchain.agents.mcg import mcg_setup
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.envs.data.dataset import Split
from labelchain.envs.label_clusters import kmeans_clusters, pifa_embeddings
from labelchain.envs.label_overlap import assign_overlapping, cluster_matrix, cooccurrence_counts, membership_matrix
from labelchain.experiments.grid import variants as vg
from labelchain.experiments.grid.execution import runs_dir_flag
from labelchain.experiments.reports.guidance import render_markdown
from labelchain.experiments.run.setup import predicted_clusters
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.run.threads import set_threads

SCRIPT = "experiments/compare_guidance.py"
GUIDANCE = ("none", "bcl", "mcg")
XLGEN_CLUSTERS = 30


@dataclass
class Args(vg.GridArgs):
    """Guidance none / bcl / mcg x learners rearrange, combined, ensemble, over datasets and seeds."""

    RENAMED: ClassVar[Renames] = {"out": ("out_dir", out_to_out_dir("guidance"))}  # before issue 20: a stem

    guidance: list[str] = field(default_factory=lambda: list(GUIDANCE), metadata={"help": f"from {GUIDANCE}"})
    clusters: int = field(default=XLGEN_CLUSTERS, metadata={"help": "k-means clusters of the label embeddings"})
    lambdas: list[int] = field(
        default_factory=lambda: [1], metadata={"help": "overlap: each label in up to λ clusters (1 = plain)"}
    )
    hide_train_labels: float = field(default=0.0, metadata={"help": "PU: share of each training doc's labels hidden"})
    guidance_weight: float = field(
        default=D.policy.guidance_weight, metadata={"help": "bcl: weight of the cluster BCE loss"}
    )
    mcg_restrict: bool = field(default=False, metadata={"help": "mcg: labels only inside the emitted clusters"})
    runs_dir: str = runs_dir_flag("runs/guidance")


def variant_name(guidance: str, clusters: int, lam: int, hide: float) -> str:
    """The method suffix of one setting (without its leading '+'); '' = unguided on full labels."""
    parts = [] if guidance == "none" else [guidance]
    if guidance != "none" and clusters != XLGEN_CLUSTERS:
        parts.append(f"c{clusters}")
    if guidance != "none" and lam > 1:
        parts.append(f"lambda{lam}")
    if hide > 0:
        parts.append(f"pu{round(100 * hide)}")
    return "+".join(parts)


def settings(args: Args) -> list[tuple[str, int, str]]:
    """(guidance, λ, variant) this run asks for, λ = 1 first within each guidance (later λ need it)."""
    out = []
    for guidance in args.guidance:
        for lam in sorted(set(args.lambdas)) if guidance != "none" else [1]:
            out.append((guidance, lam, variant_name(guidance, args.clusters, lam, args.hide_train_labels)))
    return out


def guided(cell: vg.Cell, guidance: str, clusters: np.ndarray | sp.csr_matrix, args: Args) -> tuple[ChainPolicy, Split]:
    """A fresh policy for `guidance` and the training split its learners read."""
    vg.seeded(cell.seed)
    n_features, n_labels = cell.train.X.shape[1], cell.data.n_labels
    if guidance == "mcg":
        membership = clusters if sp.issparse(clusters) else cluster_matrix(clusters, args.clusters)
        kwargs, train = mcg_setup(cell.train, args.clusters, cell.seed, membership, restrict=args.mcg_restrict)
        return build_policy(PolicyConfig(**kwargs, hidden_size=args.hidden_size), train), train
    train = cell.train
    n_clusters = 0
    if guidance == "bcl":
        train, n_clusters = with_gold_clusters(cell.train, clusters, args.clusters), args.clusters
    config = PolicyConfig(
        n_features,
        n_labels,
        hidden_size=args.hidden_size,
        n_clusters=n_clusters,
        guidance_weight=args.guidance_weight,
    )
    return build_policy(config, train), train


def run_cell(args: Args, name: str, seed: int, variants: list[str], results: str | None = None) -> dict[str, Any]:
    """One (dataset, seed): the rows of every variant in `variants` (λ > 1 retrains its λ = 1 first);
    with `results` (<out-dir>/<grid>, the results stem) each test row's predictions are saved next to it (vg.predictions_folder)."""
    started = time.perf_counter()
    cell = vg.Cell(name, seed, args, args.hide_train_labels, results=results)
    label_cluster = kmeans_clusters(pifa_embeddings(cell.train.X, cell.train.Y), args.clusters, seed=seed)
    rows: list[dict] = []
    first: dict[str, vg.Member] = {}  # guidance -> its λ = 1 rearrangement policy
    plan = settings(replace(args, lambdas=sorted({1, *args.lambdas})))  # λ > 1 starts from the λ = 1 policy
    for guidance, lam, variant in plan:
        later = any(g == guidance and v in variants for g, la, v in plan if la > 1)
        if variant not in variants and not (lam == 1 and later):
            continue
        clusters: np.ndarray | sp.csr_matrix = label_cluster
        if lam > 1:
            M = predicted_clusters(first[guidance].policy, cell.train.X)  # BCL head or MCG's tokens
            overlap = assign_overlapping(cooccurrence_counts(cell.train.Y, M), label_cluster, lam)
            clusters = membership_matrix(overlap, args.clusters)
        policy, train = guided(cell, guidance, clusters, args)
        member = vg.trained(cell, policy, "rearrange", args.rearrange_epochs, args.lr, train)
        if lam == 1:
            first[guidance] = member
        if variant in variants:
            config = {
                "guidance": guidance,
                "clusters": args.clusters if guidance != "none" else 0,
                "lambda": lam,
                "hide_train_labels": args.hide_train_labels,
                "guidance_weight": args.guidance_weight if guidance == "bcl" else None,
                "mcg_restrict": args.mcg_restrict if guidance == "mcg" else None,
            }
            rows += vg.learner_rows(cell, f"+{variant}" if variant else "", member, config, train)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def check(args: Args) -> None:
    problems = args.execution_problems() + precision_problems(args.precision)
    unknown = [g for g in args.guidance if g not in GUIDANCE]
    if unknown:
        problems.append(f"--guidance must be among {GUIDANCE}, got {unknown}")
    if args.clusters < 1 or any(lam < 1 for lam in args.lambdas):
        problems.append(f"--clusters and --lambdas must be >= 1, got {args.clusters}, {args.lambdas}")
    if not 0.0 <= args.hide_train_labels < 1.0:
        problems.append(f"--hide-train-labels must be in [0, 1), got {args.hide_train_labels}")
    if problems:
        raise SystemExit("; ".join(problems))


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    check(args)
    out = vg.results_stem(args, "guidance")
    command = command_line(args, SCRIPT)
    payload: dict = {"rows": [], "args": asdict(args), "command": command, "commands": [command]}
    done = vg.done_variants(out)
    wanted = [variant for _, _, variant in settings(args)]
    missing = {(n, s): [v for v in wanted if (n, s, v) not in done] for s in args.seeds for n in args.datasets}

    def record(key: str, result: dict[str, Any]) -> None:
        nonlocal payload
        print(f"{key}: {result['seconds']:.0f} s", flush=True)
        if out is not None:
            payload = vg.merge_into(out, payload, result["rows"], render_markdown)
        else:
            payload["rows"] += result["rows"]

    cells = [
        Cell(
            f"{n}:{s}",
            run_cell,
            {"args": args, "name": n, "seed": s, "variants": variants, "results": None if out is None else str(out)},
        )
        for (n, s), variants in missing.items()
        if variants
    ]
    failed = vg.run_cells(args, cells, record)
    if out is not None and out.with_suffix(".json").exists():
        payload = vg.load_payload(out)
    print(render_markdown(payload))
    if failed:
        print(f"compare_guidance: {len(failed)} cells missing ({', '.join(failed)}); rerun the same command to retry")
    return payload


if __name__ == "__main__":
    run_script(lambda: main(parse_args(Args)))

"""Re-render the results reports with their statistics sections and write the figures they link.

    python experiments/restate_claims.py                 # orderings, strength, guidance, trees (.md + figures)
    python experiments/restate_claims.py --bootstrap     # first: intervals from saved predictions into the JSON

Reads experiments/results/<name>.json, writes <name>.md (atomically; everything but the statistics
sections re-renders byte-identically), the CD diagrams analysis/figures/cd_<name>_<metric>.png and
analysis/figures/orderings_gap.png (learned orderings minus the best fixed one, 3 x 3 panels, with a
95% interval per bar: the paired bootstrap where predictions were saved, else a Student-t interval
over the seeds' paired differences; each panel says which).

--bootstrap reads the grids' saved predictions (envs.predictions, the "predictions" folder each
cell of orderings.json names) and stores the intervals under "bootstrap" in the JSON first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelchain.envs.atomic import atomic_write, atomic_write_text
from labelchain.envs.metrics import LOWER_IS_BETTER
from labelchain.envs.rank_tests import complete_block, friedman, nemenyi_cd
from labelchain.envs.stats import MethodPredictions
from labelchain.experiments.grid.results_file import ResultsFile, load_results, save_results
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.config import ArgsError, check_args
from labelchain.experiments.run.folder import run_script
from labelchain.experiments.run.threads import Threads, set_threads
from labelchain.experiments.reports.cd_diagram import draw
from labelchain.experiments.reports.claim_stats import (
    ALPHA,
    FIGURE_DIR,
    Loader,
    attach_bootstrap,
    figure_name,
    seed_means,
    seed_t_interval,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "experiments" / "results"
GAP_METRICS = ("P@1", "nDCG@3", "P@5", "micro_f1", "macro_f1")
GAP_METHODS = ("rearrange", "reinforce", "ppo", "combined", "ensemble")


def reports() -> dict[str, tuple[Callable[[dict], str], tuple[str, ...], tuple[str, ...] | None, tuple]]:
    """name -> (render, metrics, Friedman methods or None for all, named pairs); imported lazily (trees: torch)."""
    from labelchain.experiments.reports import (
        guidance as guidance_report,
        orderings as orderings_report,
        strength as strength_report,
    )
    from labelchain.experiments.compare_trees import NAMED_PAIRS as TREE_PAIRS
    from labelchain.experiments.compare_trees import render_markdown as trees_markdown

    return {
        "orderings": (
            orderings_report.render_markdown,
            orderings_report.CLAIM_METRICS,
            orderings_report.RANKED_METHODS,
            orderings_report.NAMED_PAIRS,
        ),
        "strength": (strength_report.render_markdown, strength_report.RANKING, None, strength_report.NAMED_PAIRS),
        "guidance": (guidance_report.render_markdown, guidance_report.CLAIM_METRICS, None, guidance_report.NAMED_PAIRS),
        "trees": (trees_markdown, orderings_report.CLAIM_METRICS, None, TREE_PAIRS),
    }


def cd_figures(name: str, results: dict, metrics: tuple[str, ...], methods: tuple[str, ...] | None) -> list[Path]:
    """One CD diagram per metric over the datasets of `results` (none with fewer than 2 datasets)."""
    rows = results.get("rows", [])
    written: list[Path] = []
    for metric in metrics:
        table = seed_means(rows, metric)
        block = complete_block(table, methods, missing="drop")
        if len(table) < 2 or len(block.methods) < 2:
            continue
        result = friedman(table, block.methods, higher_is_better=metric not in LOWER_IS_BETTER)
        cd = nemenyi_cd(len(result.methods), result.n_datasets, ALPHA)
        title = f"{name}: {metric}, mean rank over {result.n_datasets} datasets (1 = best); Friedman p = {result.p_chi2:.3g}"
        path = REPO_ROOT / FIGURE_DIR / figure_name(f"cd_{name}", metric)
        written.append(draw(result.methods, result.mean_ranks, cd, title, path))
    return written


def gap_intervals(results: dict, dataset: str, method: str, metric: str) -> tuple[float, float, float, str] | None:
    """(mean, low, high, kind) of method - best_fixed on one dataset: the bootstrap entry if any, else t."""
    for e in results.get("bootstrap", []):
        if (e["dataset"], e["a"], e["b"], e["metric"]) == (dataset, method, "best_fixed", metric):
            return e["difference"], e["low"], e["high"], "bootstrap"
    rows = [r for r in results.get("rows", []) if r["dataset"] == dataset]
    base = {r["seed"]: r["metrics"][metric] for r in rows if r["method"] == "best_fixed"}
    diffs = [r["metrics"][metric] - base[r["seed"]] for r in rows if r["method"] == method and r["seed"] in base]
    if not diffs:
        return None
    return (*seed_t_interval(diffs), f"t, {len(diffs)} seeds")


def gap_figure(results: dict, path: Path) -> Path:
    """Learned orderings minus best fixed, one panel per dataset (3 columns), bars with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with plt.style.context("default"):  # the same PNG whatever a notebook set in rcParams
        return _gap_figure(results, path, plt, np)


def _gap_figure(results: dict, path: Path, plt: Any, np: Any) -> Path:
    datasets = list(dict.fromkeys(r["dataset"] for r in results.get("rows", [])))
    n_cols = 3
    n_rows = max(1, -(-len(datasets) // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(16, 3.6 * n_rows), squeeze=False)
    width = 0.8 / len(GAP_METHODS)
    for ax, dataset in zip(axes.ravel(), datasets):
        kinds = set()
        for i, method in enumerate(GAP_METHODS):
            stats = [gap_intervals(results, dataset, method, m) for m in GAP_METRICS]
            if not any(stats):
                continue
            x = np.arange(len(GAP_METRICS)) + (i - (len(GAP_METHODS) - 1) / 2) * width
            mean = np.array([100 * s[0] if s else np.nan for s in stats])
            low = np.array([100 * s[1] if s else np.nan for s in stats])
            high = np.array([100 * s[2] if s else np.nan for s in stats])
            kinds |= {s[3] for s in stats if s}
            ax.bar(x, mean, width, yerr=[mean - low, high - mean], capsize=2, label=method)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(GAP_METRICS)), GAP_METRICS, fontsize=9)
        ax.set_title(f"{dataset} (95% interval: {', '.join(sorted(kinds))})", fontsize=10)
        ax.set_ylabel("minus best fixed (points ×100)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(datasets) :]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(GAP_METHODS), bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(
        "Learned orderings minus the best fixed ordering (chosen per seed on validation); "
        "t intervals over 3 seeds are wide by construction",
        y=1.03,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(
        path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    )
    plt.close(fig)
    return path


def grid_loader(results: dict, out_dir: Path, grid: str) -> Loader:
    """Rows' saved test predictions (envs.predictions files): in the folder a cell of the results file
    names ("predictions", relative to out_dir), else in the grids' common place
    <out_dir>/predictions/<grid>/<dataset>/seed<seed>/<method>.npz. Every file of one cell must come
    from the same dataset version (content hash): otherwise a one-line error names both files."""
    load_predictions = importlib.import_module("labelchain.envs.predictions").load_predictions
    cells = results.get("cells", {})
    first: dict[tuple[str, int], tuple[str, Path]] = {}

    def load(dataset: str, seed: int, method: str) -> tuple[Any, MethodPredictions] | None:
        folder = cells.get(f"{dataset}:{seed}", {}).get("predictions") or f"predictions/{grid}/{dataset}/seed{seed}"
        path = out_dir / folder / f"{method}.npz"
        if not path.is_file():
            return None
        saved = load_predictions(path, split="test")
        seen = first.setdefault((dataset, seed), (saved.dataset_hash, path))
        if seen[0] != saved.dataset_hash:
            raise ValueError(
                f"{path}: dataset hash {saved.dataset_hash} differs from {seen[0]} of {seen[1]} (same cell, "
                "another dataset version)"
            )
        return saved.gold, MethodPredictions(saved.top_ids if saved.top_ids.shape[1] else None, saved.pred_sets)

    return load


REPORTS = ("orderings", "strength", "guidance", "trees")


@dataclass
class Args(Threads):
    """Re-render the results reports with their statistics sections and write the figures they link."""

    reports: list[str] = field(default_factory=lambda: list(REPORTS), metadata={"help": f"from {REPORTS}"})
    bootstrap: bool = field(default=False, metadata={"help": "intervals from saved predictions into the JSON"})
    resamples: int = field(default=1000, metadata={"help": "--bootstrap: paired resamples", "at_least": 1})


def main(args: Args) -> None:
    problems = check_args(args)
    if problems:
        raise ArgsError("; ".join(problems))
    set_threads(args.threads or 1)
    table = reports()
    unknown = sorted(set(args.reports) - set(table))
    if unknown:
        raise ArgsError(f"--reports: unknown {', '.join(unknown)}; choose from {', '.join(table)}")
    for name in args.reports:
        render, metrics, methods, pairs = table[name]
        path = RESULTS / f"{name}.json"
        results = load_results(path, name).payload()
        if args.bootstrap:
            peers = ("ovr_logistic", "omikuji")
            entries = attach_bootstrap(
                results, grid_loader(results, RESULTS, name), pairs, metrics, peers, args.resamples
            )
            save_results(path, ResultsFile.from_payload(results, name))
            print(f"{name}: {len(entries)} bootstrap intervals")
        atomic_write_text(RESULTS / f"{name}.md", render(results))
        figures = cd_figures(name, results, metrics, methods)
        if name == "orderings":
            figures.append(gap_figure(results, REPO_ROOT / FIGURE_DIR / "orderings_gap.png"))
        print(f"{name}: {name}.md, " + ", ".join(str(p.relative_to(REPO_ROOT)) for p in figures))


if __name__ == "__main__":
    run_script(lambda: main(parse_args(Args)))

"""Render experiments/results/prior.{json,md} and analysis/figures/prior_gain.png from five grids' results.

    python experiments/prior.py                                   # the committed files (paths below)
    python experiments/prior.py --prior /elsewhere/prior/orderings.json --resamples 200

Inputs (compare_orderings results files, experiments/grid/results_file.py reads every shape):
--prior: the grid run with `--prior ovr_logistic --peers none` (every chain row with the peer's
out-of-fold scores as its prior); --nohistory: the same with `--no-label-history` (ablation d);
--omikuji: the chain with `--prior omikuji` (which prior); --shortlist50: the chain with `--prior
ovr_logistic --shortlist 50`; --base: the no-prior grid with the tuned peers (orderings.json).
--nohistory, --omikuji and --shortlist50 may be absent or partial. --recall: prior_recall.json, the
matcher's recall@50 shown beside the shortlist (optional).
Predictions are read from each file's folder as restate_claims.grid_loader reads them. Nothing is
trained here: the report is rebuilt from the files alone, so it can be re-run while a grid fills in.
What the report says and how: experiments/reports/prior.py; docs/prior-results.md.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labelchain.envs.atomic import atomic_write, atomic_write_text
from labelchain.envs.stats import MethodPredictions
from labelchain.experiments.grid.results_file import ResultsFile, load_results, save_results
from labelchain.experiments.reports import prior as report
from labelchain.experiments.reports import prior_rows as merged
from labelchain.experiments.reports.prior_shortlist import recall_at
from labelchain.experiments.reports.prior_tables import difference, goal_metrics
from labelchain.experiments.reports.claim_stats import FIGURE_DIR, Loader
from labelchain.experiments.restate_claims import grid_loader
from labelchain.experiments.run.common import command_line, parse_args
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.threads import Threads, set_threads

SCRIPT = "experiments/prior.py"
FIGURE = "prior_gain.png"


def _file(grid: str) -> str:
    return merged.GRIDS[grid][2] + "/orderings.json"


@dataclass
class Args(Threads):
    """Issue 16's prior-chain report (goal table, ablations, ECC) from the grids' results files."""

    prior: str = field(default=_file("prior"), metadata={"help": "the --prior ovr_logistic grid's results"})
    nohistory: str = field(
        default=_file("prior_nohistory"), metadata={"help": "its --no-label-history twin (optional)"}
    )
    omikuji: str = field(default=_file("prior_omikuji"), metadata={"help": "the --prior omikuji grid's (optional)"})
    shortlist50: str = field(
        default=_file("prior_sl50"), metadata={"help": "the --prior ovr_logistic --shortlist 50 grid's (optional)"}
    )
    per_label: str = field(
        default=_file("prior_perlabel"),
        metadata={"help": "the --prior ovr_logistic --prior-scale per_label grid's (optional)"},
    )
    recall: str = field(
        default="experiments/results/prior_recall.json", metadata={"help": "the matcher's recall@M (optional)"}
    )
    base: str = field(default=_file("base"), metadata={"help": "the no-prior grid with the tuned peers"})
    out_dir: str = "experiments/results"
    figure_dir: str = FIGURE_DIR
    resamples: int = 1000


def loader(results: dict[str, Any], files: dict[str, dict[str, Any]], paths: dict[str, Path]) -> Loader:
    """One Loader over the grids (keyed as prior_rows.GRIDS): the method's suffix names the grid, a
    val_best row reads its seed's chosen row; files loaded once."""
    loads = {name: grid_loader(files[name], paths[name].parent, "orderings") for name in files}
    chosen = {(r["dataset"], r["seed"], r["method"]): r["chosen"] for r in results["rows"] if "chosen" in r}

    @functools.cache
    def load(dataset: str, seed: int, method: str) -> tuple[Any, MethodPredictions] | None:
        if method in (merged.VAL_BEST, merged.VAL_ANY):
            if (dataset, seed, method) not in chosen:  # that cell's rows carry no validation metrics
                return None
            method = chosen[(dataset, seed, method)]
        grid = merged.grid_of(method)
        suffix = merged.GRIDS[grid][1]
        return loads[grid](dataset, seed, method[: len(method) - len(suffix)]) if grid in loads else None

    return load


def gain_figure(results: dict[str, Any], path: Path) -> Path:
    """Per dataset, the chain alone and the prior chain minus the better peer (per metric), 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from labelchain.experiments.reports.claim_stats import BETTER_PEER, resolve_pair, seed_means

    datasets = results["datasets"]
    systems = [(merged.CHAIN_ALONE, "chain alone (no prior)"), (merged.FIXED, f"OvR-prior chain ({merged.FIXED})")]
    if any(r["method"] == merged.FIXED_OMIKUJI for r in results["rows"]):
        systems.append((merged.FIXED_OMIKUJI, f"Omikuji-prior chain ({merged.FIXED_OMIKUJI})"))
    width = 0.8 / len(merged.GOAL_METRICS)
    with plt.style.context("default"):
        fig, axes = plt.subplots(len(systems), 1, figsize=(15, 4.2 * len(systems)), sharey=True, squeeze=False)
        for ax, (system, title) in zip(axes[:, 0], systems):
            for i, metric in enumerate(merged.GOAL_METRICS):
                stats = []
                for dataset in datasets:
                    rows = [r for r in results["rows"] if r["dataset"] == dataset]
                    table = seed_means(rows, metric).get(dataset, {})
                    pair = resolve_pair(table, (system, BETTER_PEER), merged.PEERS, metric)
                    kept = metric in goal_metrics(results, dataset, (system, *merged.PEERS))
                    stats.append(difference(results, dataset, *pair, metric) if pair and kept else None)
                x = np.arange(len(datasets)) + (i - (len(merged.GOAL_METRICS) - 1) / 2) * width
                mean = np.array([100 * s.difference if s else np.nan for s in stats])
                err = np.array(  # one seed without predictions: no interval, no error bar
                    [[100 * (s.difference - s.low), 100 * (s.high - s.difference)] if s else [0, 0] for s in stats]
                )
                err[~np.isfinite(err)] = 0
                err = np.clip(err, 0, None)  # a percentile interval may sit beside its point
                ax.bar(x, mean, width, yerr=err.T, capsize=1.5, label=metric)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(range(len(datasets)), datasets, fontsize=9)
            ax.set_xlim(-0.5, len(datasets) - 0.5)  # the same slots in every panel, bars or none
            ax.set_ylabel("minus the better peer (points ×100)", fontsize=9)
            ax.set_title(f"{title} minus the better of {', '.join(merged.PEERS)} per metric", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0, 0].legend(ncol=len(merged.GOAL_METRICS), fontsize=8, loc="lower left")
        fig.suptitle(
            "Gain over the better tuned peer; 95% intervals (paired bootstrap, or t over seeds); no bar: no cell yet"
        )
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save = functools.partial(fig.savefig, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        atomic_write(path, lambda f: save(f))
        plt.close(fig)
    return path


def main(args: Args) -> Path:
    set_threads(args.threads)
    if args.resamples < 1:
        raise ArgsError(f"--resamples must be at least 1, got {args.resamples}")
    paths = {grid: Path(getattr(args, flag)) for grid, (flag, _, _) in merged.GRIDS.items()}
    optional = ("prior_nohistory", "prior_omikuji", "prior_sl50", "prior_perlabel")
    files = {grid: load_results(p).payload() for grid, p in paths.items() if grid not in optional or p.exists()}
    try:
        results = merged.combine(
            files["prior"],
            files.get("prior_nohistory"),
            files["base"],
            files.get("prior_omikuji"),
            files.get("prior_sl50"),
            files.get("prior_perlabel"),
        )
        results["shortlist_recall"] = recall_at(load_results(args.recall, "prior_recall", missing_ok=True).payload())
        merged.attach(results, loader(results, files, paths), args.resamples)
    except ValueError as error:  # a grid of the wrong prior, predictions on different gold labels: one line
        raise ArgsError(str(error)) from None
    results |= {"command": command_line(args, SCRIPT), "args": asdict(args)}
    out = Path(args.out_dir)
    save_results(out / "prior.json", ResultsFile.from_payload(results, "prior"))
    atomic_write_text(out / "prior.md", report.render_markdown(results))
    figure = gain_figure(results, Path(args.figure_dir) / FIGURE)
    done = ", ".join(f"{len(cells)} {grid}" for grid, cells in results["cells"].items())
    print(f"prior.md: cells {done}; {len(results['bootstrap'])} bootstrap intervals; {figure}")
    return out / "prior.json"


if __name__ == "__main__":
    from labelchain.experiments.run.folder import run_script

    run_script(lambda: main(parse_args(Args)))

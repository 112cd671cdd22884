"""Loading and plotting helpers shared by the analysis notebooks, and the headless notebook runner.

The notebooks stay thin: what several of them need (results files as tables, run folders, TensorBoard
curves with wall time, decoded chains and order statistics) lives here, where tests can reach it.
Everything reads what experiments wrote (experiments/results/*.json, runs/); nothing here trains.

    python analysis/nbtools.py analysis/*.ipynb        # re-execute notebooks in place (outputs kept)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelchain.experiments.grid.results_file import load_results
from labelchain.experiments.reports.orderings import ordered_methods as ordered  # noqa: F401  (one method order for reports and notebooks)

REPO_ROOT = Path(__file__).resolve().parents[1]
KIND_COLORS = {
    "fixed": "#9e9e9e",
    "best_fixed": "#505050",
    "dynamic": "#1f77b4",
    "ensemble": "#2ca02c",
    "peer": "#ff7f0e",
}
DYNAMIC = ("rearrange", "reinforce", "ppo", "combined", "ensemble")


def repo_path(path: str | Path) -> Path:
    """Paths in notebook parameters are relative to the repository root (notebooks run in analysis/)."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """A results file; a missing one says which script writes it."""
    path = repo_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} yet (see the notebook's first cell for the command that writes it)")
    return load_results(path).payload()


# ----------------------------------------------------------------------------- result tables
def orderings_frame(results: dict[str, Any]):
    """orderings.json rows as a DataFrame: dataset, method, kind, seed, wall_time_s and one column per metric."""
    import pandas as pd

    records = [
        {
            "dataset": r["dataset"],
            "method": r["method"],
            "kind": r["kind"],
            "seed": r["seed"],
            "wall_time_s": r.get("wall_time_s"),
            **r["metrics"],
        }
        for r in results.get("rows", [])
    ]
    return pd.DataFrame.from_records(records)


def ablations_frame(results: dict[str, Any], split: str = "test"):
    """ablations.json entries as a DataFrame: variant, factor, setting, seed, wall_time_s, metrics of `split`."""
    import pandas as pd

    records = [
        {
            "variant": e["variant"],
            "factor": e["factor"],
            "setting": e["setting"],
            "seed": e["seed"],
            "wall_time_s": e["wall_time_s"],
            "best_update": e.get("best_update"),
            **e[split],
        }
        for e in results.get("entries", {}).values()
    ]
    return pd.DataFrame.from_records(records)


def mean_std_table(frame, by: list[str], metrics: Sequence[str], scale: float = 100.0, digits: int = 2):
    """'mean ± std' strings (sample std over seeds; one seed: mean only), plus the seed count n."""
    grouped = frame.groupby(by, sort=False)
    mean, std, count = grouped[list(metrics)].mean(), grouped[list(metrics)].std(ddof=1), grouped["seed"].nunique()
    table = mean.copy().astype(object)
    for metric in metrics:
        for key in mean.index:
            m, s = scale * mean.loc[key, metric], scale * std.loc[key, metric]
            table.loc[key, metric] = (
                f"{m:.{digits}f}" if count[key] < 2 or math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
            )
    table.insert(0, "n", count)
    return table


def paired_gaps(frame, reference: str, methods: Sequence[str], metrics: Sequence[str], scale: float = 100.0):
    """Per dataset, method and metric: (method − reference) over seeds where both ran, ×scale (points).

    Returns a long DataFrame: dataset, method, metric, mean, std, n, relative_percent (of the means).
    """
    import pandas as pd

    out = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        ref = rows[rows.method == reference].set_index("seed")
        for method in methods:
            mine = rows[rows.method == method].set_index("seed")
            seeds = sorted(set(ref.index) & set(mine.index))
            if not seeds:
                continue
            for metric in metrics:
                diff = scale * (mine.loc[seeds, metric] - ref.loc[seeds, metric])
                ref_mean = ref.loc[seeds, metric].mean()
                out.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "metric": metric,
                        "mean": diff.mean(),
                        "std": diff.std(ddof=1) if len(seeds) > 1 else 0.0,
                        "n": len(seeds),
                        "relative_percent": 100.0 * (mine.loc[seeds, metric].mean() - ref_mean) / ref_mean
                        if ref_mean
                        else math.nan,
                    }
                )
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- run folders
def run_info(run_dir: Path) -> dict[str, Any]:
    """dataset, group, seed, started (unix s) from a `{dataset}__{group}__{seed}__{time}` folder name."""
    parts = run_dir.name.split("__")
    if len(parts) != 4:
        raise ValueError(f"{run_dir}: not a run folder name (dataset__group__seed__time)")
    return {"dataset": parts[0], "group": parts[1], "seed": int(parts[2]), "started": parts[3]}


def find_runs(
    runs_dir: str | Path, dataset: str | None = None, finished: bool = True, newest_per_seed: bool = True
) -> list[Path]:
    """Run folders under `runs_dir` (recursively) with a config.json (and metrics.json if `finished`).

    With `newest_per_seed`, one folder per (dataset, group, seed): the newest, as a rerun replaces a run.
    """
    runs_dir = repo_path(runs_dir)
    found = []
    for config in sorted(runs_dir.rglob("config.json")):
        folder = config.parent
        if finished and not (folder / "metrics.json").is_file():
            continue
        try:
            info = run_info(folder)
        except ValueError:
            continue
        if dataset is None or info["dataset"] == dataset:
            found.append(folder)
    if newest_per_seed:
        newest: dict[tuple, Path] = {}
        for folder in found:
            info = run_info(folder)
            key = (info["dataset"], info["group"], info["seed"])
            if key not in newest or folder.name > newest[key].name:
                newest[key] = folder
        found = sorted(newest.values())
    return found


def run_learners(run_dir: Path) -> list[str]:
    """Learner subfolders of a run that hold TensorBoard events."""
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*")))


# ----------------------------------------------------------------------------- TensorBoard curves
def event_scalars(log_dir: str | Path):
    """Scalars of one event folder with wall time: DataFrame tag, step, wall_time (unix s), value.

    Read as the training script's own tests read them (`experiments.run.folder.scalar_events`), so purged
    steps of a resumed run are dropped.
    """
    import pandas as pd

    from labelchain.experiments.run.folder import scalar_events

    records = [(tag, e.step, e.wall_time, e.value) for tag, events in scalar_events(log_dir).items() for e in events]
    return pd.DataFrame.from_records(records, columns=["tag", "step", "wall_time", "value"])


def load_curves(run_dirs: Iterable[Path], tags: Sequence[str], learners: Sequence[str] | None = None):
    """Curves of every learner of every run: run, group, seed, learner, tag, step, elapsed_s, value.

    elapsed_s counts from the learner's first event (its step-0 validation), so learners that start
    from a warm start show only their own time.
    """
    import pandas as pd

    frames = []
    for run_dir in run_dirs:
        info = run_info(run_dir)
        for learner in run_learners(run_dir):
            if learners is not None and learner not in learners:
                continue
            scalars = event_scalars(run_dir / learner)
            if scalars.empty:
                continue
            scalars["elapsed_s"] = scalars["wall_time"] - scalars["wall_time"].min()
            scalars = scalars[scalars.tag.isin(tags)].assign(
                run=run_dir.name, group=info["group"], seed=info["seed"], learner=learner
            )
            frames.append(scalars)
    if not frames:
        return pd.DataFrame(columns=["run", "group", "seed", "learner", "tag", "step", "elapsed_s", "value"])
    return pd.concat(frames, ignore_index=True)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average (debiased), so plots match what TensorBoard shows."""
    out, last, norm = np.empty(len(values)), 0.0, 0.0
    for i, value in enumerate(values):
        last, norm = weight * last + (1 - weight) * value, weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def seed_band(curves, series: str = "learner", smoothing: float = 0.0):
    """Mean and std over seeds per (series, tag, step), with mean elapsed seconds at that step."""
    import pandas as pd

    frames = []
    for _, one in curves.groupby([series, "tag", "seed"], sort=False):
        one = one.sort_values("step").copy()
        if smoothing > 0:
            one["value"] = smooth(one["value"].to_numpy(), smoothing)
        frames.append(one)
    if not frames:
        return pd.DataFrame(columns=[series, "tag", "step", "mean", "std", "n", "elapsed_s"])
    grouped = pd.concat(frames).groupby([series, "tag", "step"])
    band = grouped.agg(
        mean=("value", "mean"), std=("value", "std"), n=("seed", "nunique"), elapsed_s=("elapsed_s", "mean")
    ).reset_index()
    band["std"] = band["std"].fillna(0.0)
    return band


# ----------------------------------------------------------------------------- decoded chains
def decode_chains(policy, X, max_steps: int, batch_size: int = 512) -> list[np.ndarray]:
    """Each document's predicted labels in the order the policy emits them (greedy, up to its STOP)."""
    import torch

    from labelchain.agents.decoding import greedy_decode

    chains: list[np.ndarray] = []
    policy.eval()
    with torch.no_grad():
        for begin in range(0, X.shape[0], batch_size):
            result = greedy_decode(policy, X[begin : begin + batch_size], max_steps=max_steps)
            labels, lengths = result.labels.numpy(), result.set_lengths.numpy()
            chains += [row[:length] for row, length in zip(labels, lengths)]
    return chains


def pooled_kendall_tau(chains: Sequence[np.ndarray]) -> tuple[float, int]:
    """Agreement of label order across documents: Kendall tau pooled over shared label pairs.

    For every pair of documents and every label pair both contain, the pair is concordant when both
    emit the two labels in the same order. Returns ((concordant − discordant) / comparisons, comparisons):
    1 = one global order (any fixed ordering), about 0 = order independent of the document.
    """
    firsts, seconds = [], []
    for chain in chains:
        chain = np.asarray(chain, dtype=np.int64)
        if len(chain) < 2:
            continue
        i, j = np.triu_indices(len(chain), k=1)
        firsts.append(chain[i])
        seconds.append(chain[j])
    if not firsts:
        return math.nan, 0
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    low, high = np.minimum(a, b), np.maximum(a, b)
    keys = low * (int(high.max()) + 1) + high
    forward = (a < b).astype(np.int64)  # the lower label id first
    unique, inverse = np.unique(keys, return_inverse=True)
    n_forward = np.bincount(inverse, weights=forward, minlength=len(unique))
    n_total = np.bincount(inverse, minlength=len(unique)).astype(np.float64)
    n_backward = n_total - n_forward
    concordant = (n_forward * (n_forward - 1) / 2 + n_backward * (n_backward - 1) / 2).sum()
    discordant = (n_forward * n_backward).sum()
    comparisons = concordant + discordant
    return (float((concordant - discordant) / comparisons) if comparisons else math.nan), int(comparisons)


def emission_positions(chains: Sequence[np.ndarray], n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean 1-based position at which each label is emitted (nan if never) and how often it is emitted."""
    total, count = np.zeros(n_labels), np.zeros(n_labels)
    for chain in chains:
        np.add.at(total, np.asarray(chain, dtype=np.int64), np.arange(1, len(chain) + 1))
        np.add.at(count, np.asarray(chain, dtype=np.int64), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan), count


def precision_by_position(chains: Sequence[np.ndarray], gold: Sequence[np.ndarray], max_position: int | None = None):
    """Per 1-based position: labels emitted there, how many are gold, precision."""
    import pandas as pd

    longest = max((len(c) for c in chains), default=0)
    max_position = longest if max_position is None else min(max_position, longest)
    emitted, correct = np.zeros(max_position), np.zeros(max_position)
    for chain, gold_labels in zip(chains, gold):
        chain = np.asarray(chain, dtype=np.int64)[:max_position]
        hits = np.isin(chain, gold_labels)
        emitted[: len(chain)] += 1
        correct[: len(chain)] += hits
    return pd.DataFrame(
        {
            "position": np.arange(1, max_position + 1),
            "emitted": emitted.astype(int),
            "correct": correct.astype(int),
            "precision": np.divide(correct, emitted, out=np.full(max_position, np.nan), where=emitted > 0),
        }
    )


# ----------------------------------------------------------------------------- figures
def save_figure(fig, figure_dir: str | Path | None, name: str, dpi: int = 120) -> Path | None:
    """Write `fig` as PNG under figure_dir (relative to the repo root); None = don't save."""
    if figure_dir is None:
        return None
    path = repo_path(figure_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------- running notebooks
def kernel_manager_class():
    """A kernel manager whose kernel is this very interpreter (so a venv's notebooks run in that venv),
    whatever python3 kernelspec a user or system folder registers."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name="Python 3 (ipykernel)",
                    language="python",
                    name="python3",
                )
            return self._kernel_spec

    return ThisPythonKernelManager


def execute_notebook(
    path: str | Path, parameters: dict[str, Any] | None = None, out_path: str | Path | None = None, timeout: int = 1800
):
    """Run a notebook top to bottom in analysis/ (papermill-style: `parameters` go into a cell injected
    after the one tagged "parameters"); write it to `out_path` (None: don't write). Raises
    nbclient's CellExecutionError naming the failing cell."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        index = next(
            (i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])), None
        )
        if index is None:
            raise ValueError(f"{path}: no cell tagged 'parameters' to override")
        source = "# Parameters injected by nbtools.execute_notebook\n" + "\n".join(
            f"{name} = {value!r}" for name, value in parameters.items()
        )
        notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=kernel_manager_class(),
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    client.execute()
    if out_path is not None:
        nbformat.write(notebook, str(out_path))
    return notebook


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"executing {name}", flush=True)
        execute_notebook(name, out_path=name)

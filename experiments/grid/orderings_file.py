"""orderings.json as the compare_orderings grid updates it: load, merge one cell, write (with orderings.md).

Kept apart from compare_orderings.py, which schedules the grid's cells: everything here only reads and
writes the results file, so a cell's merge (from the grid, a --peers-only refresh, or a test) is one
rule. The file's format is experiments/grid/results_file.py's; the table is experiments/reports/orderings.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labelchain.agents.learners import LEARNERS
from labelchain.experiments.grid import results_file
from labelchain.experiments.peers import PEERS
from labelchain.experiments.reports.orderings import render_markdown
from labelchain.experiments.run.common import atomic_write_text
from labelchain.experiments.run.config import ArgsError


def cell_key(dataset: str, seed: int) -> str:
    return f"{dataset}:{seed}"


def load_results(path: Path) -> dict[str, Any]:
    """orderings.json (any format: experiments/grid/results_file.py) as the flat dict the grid updates."""
    try:
        results = results_file.load_results(path, "orderings", missing_ok=True).payload()
        if not isinstance(results.setdefault("cells", {}), dict):
            raise results_file.ResultsFileError(path, "'cells' must be an object")
    except results_file.ResultsFileError as error:
        raise ArgsError(
            f"{path}: not an orderings results file ({error.reason}); move it away or pick another --out-dir"
        ) from None
    results.setdefault("skipped_peers", [])
    return results


def merge_cell(results: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """Replace the cell's rows and notes (a rerun with another configuration must not add a second copy)."""
    dataset, seed = cell["dataset"], cell["seed"]
    same = lambda item: item["dataset"] == dataset and item["seed"] == seed  # noqa: E731
    results["rows"] = [row for row in results["rows"] if not same(row)] + cell["rows"]
    results["skipped_peers"] = [s for s in results.get("skipped_peers", []) if not same(s)] + cell["skipped_peers"]
    results["cells"][cell_key(dataset, seed)] = {
        key: value for key, value in cell.items() if key not in ("rows", "skipped_peers")
    }
    return results


def merge_cell_into_file(out_dir: Path, cell: dict[str, Any]) -> dict[str, Any]:
    """Merge `cell` into orderings.json as it is on disk now, under the file's lock, and return the
    merged results: two grids writing one --out-dir (a --redo beside a running grid) keep each
    other's cells (a grid used to write back the copy it had loaded at its start)."""
    path = out_dir / "orderings.json"
    with results_file.locked(path):
        results = merge_cell(load_results(path), cell)
        write_results(out_dir, results)
    return results


def write_results(out_dir: Path, results: dict[str, Any]) -> None:
    order = {name: i for i, name in enumerate([*LEARNERS, "best_fixed", "ensemble", *PEERS])}
    results["rows"].sort(key=lambda r: (r["dataset"], r["seed"], order.get(r["method"], len(order)), r["method"]))
    results_file.save_results(out_dir / "orderings.json", results_file.ResultsFile.from_payload(results, "orderings"))
    atomic_write_text(out_dir / "orderings.md", render_markdown(results))

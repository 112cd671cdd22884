"""What Ray costs and gives: the orderings grid on the local backend vs Ray (one node, or a cluster).

    python experiments/bench/bench_ray.py                                  # quick emotions grid: local vs local Ray
    python experiments/bench/bench_ray.py --grid bibtex --seeds 0 1        # the bibtex slice of the orderings grid
    python experiments/bench/bench_ray.py --backends cluster --address auto   # on a running `ray start` cluster

Each measurement is a fresh child process on a fresh --runs-dir (the grids reuse finished runs, so a
reused folder would measure nothing). Wall time is the child's whole life (imports, Ray start-up,
training, shut-down). Memory is the peak, sampled every 0.2 s, of the summed PSS (proportional set
size: shared pages split between processes, so sums are not double-counted) of the child's process
tree plus, for `cluster`, every Ray process on this machine (raylet, GCS, workers; started by `ray
start`, not by the child). A `startup` row times `ray.init` of a local 2-CPU Ray and the idle
instance's memory. Rows also list the result rows (dataset:seed:method) whose test metrics differ
from the first grid measured: none = the same numbers on both backends (Omikuji is not seedable, so
its rows may differ between any two runs). Prints a table and a final JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from labelchain.experiments import compare_orderings
from labelchain.experiments.grid import execution, ray_backend
from labelchain.experiments.run.common import REPO_ROOT, Renames, atomic_write_json, parse_args
from labelchain.experiments.reports.orderings import render_markdown
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.run.threads import Threads


@dataclass
class Args(Threads):
    """Orderings grid: local backend vs Ray backend (local Ray or a cluster), wall time and peak memory."""

    RENAMED: ClassVar[Renames] = {"out": "out_file"}  # issue 20: --out-dir is a folder, --out-file one file

    grid: str = field(
        default="quick",
        metadata={"help": "quick (emotions, tiny budget) or bibtex (the orderings grid's bibtex cells)"},
    )
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds (cells) of the grid"})
    updates: int | None = field(
        default=None, metadata={"help": "bibtex: updates per learner (default: the grid's 300)"}
    )
    backends: list[str] = field(
        default_factory=lambda: ["startup", "local", "ray"],
        metadata={"help": "from startup, local, ray, cluster (cluster needs --address)"},
    )
    address: str | None = field(default=None, metadata={"help": "the cluster's address for the cluster backend"})
    jobs: int = field(default=2, metadata={"help": "cells at once (local pool / local Ray CPUs)"})
    repeats: int = field(default=1, metadata={"help": "measurements per backend"})
    out_file: str | None = field(default=None, metadata={"help": "also write the rows to this JSON file"})
    child: str | None = field(default=None, metadata={"help": "(internal) run one measurement on this backend"})


def grid_args(args: Args, runs_dir: Path) -> compare_orderings.Args:
    if args.grid == "quick":
        base = compare_orderings.Args(quick=True, peers=["none"], progress=False)
    elif args.grid == "bibtex":
        base = compare_orderings.Args(datasets=["bibtex"], progress=False)
        base = base if args.updates is None else replace(base, updates=args.updates)
    else:
        raise SystemExit(f"error: --grid must be quick or bibtex, got {args.grid!r}")
    resolved = compare_orderings.resolve_args(replace(base, runs_dir=str(runs_dir), out_dir=str(runs_dir / "out")))
    return replace(resolved, seeds=list(args.seeds))


# ----------------------------------------------------------------------------- the measured child
def child(args: Args) -> dict:
    """One grid (or Ray start-up) in this process; the timings the parent cannot see from outside."""
    runs_dir = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    if args.child == "startup":
        started = time.perf_counter()
        ray_backend.ray_init(None, args.jobs)
        import ray

        seconds = time.perf_counter() - started
        time.sleep(3.0)  # let the parent sample the idle instance
        ray.shutdown()
        return {"ray_init_s": seconds, "runs_dir": str(runs_dir)}
    grid = grid_args(args, runs_dir)
    results: dict[str, Any] = {"cells": {}, "rows": [], "skipped_peers": []}
    cells = [
        Cell(
            compare_orderings.cell_key(d, s),
            compare_orderings.compute_cell,
            {"args": grid, "dataset": d, "seed": s, "command": "bench"},
        )
        for d, s in compare_orderings.grid(grid)
    ]
    init_s = None
    if args.child in ("ray", "cluster"):
        started = time.perf_counter()
        ray_backend.ray_init(args.address if args.child == "cluster" else None, args.jobs)
        init_s = time.perf_counter() - started
    started = time.perf_counter()
    failed = execution.run_cells(
        cells,
        lambda key, cell: compare_orderings.merge_cell(results, cell),
        backend="local" if args.child == "local" else "ray",
        jobs=args.jobs,
        threads=args.threads,
        storage_dir=runs_dir,
        progress=False,
    )
    grid_s = time.perf_counter() - started
    if init_s is not None:
        import ray

        ray.shutdown()
    rows = [{**row, "wall_time_s": 0.0, "run_dir": None} for row in results["rows"]]
    table = render_markdown({**results, "rows": rows, "command": "bench"})
    nodes = {
        json.loads(line).get("node")
        for path in runs_dir.glob("ray/grid_*/*/result.json")
        for line in path.read_text().splitlines()
        if '"node"' in line
    }  # Ray nodes the trials ran on
    row_sha = {
        f"{r['dataset']}:{r['seed']}:{r['method']}": _sha(json.dumps(r["metrics"], sort_keys=True))
        for r in results["rows"]
    }
    return {
        "ray_init_s": init_s,
        "grid_s": grid_s,
        "failed": failed,
        "cells": len(cells),
        "nodes": len(nodes),
        "table_sha": _sha(table),
        "row_sha": row_sha,
        "runs_dir": str(runs_dir),
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- memory from /proc
def _pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
            except (OSError, ValueError, IndexError):
                continue
    return table


def tree_and_ray_mb(root: int, with_ray: bool) -> float:
    """Summed PSS of `root`'s process tree (plus every Ray process on the machine when asked)."""
    table, members, changed = _processes(), {root}, True
    while changed:
        grown = members | {pid for pid, (ppid, _) in table.items() if ppid in members}
        changed, members = grown != members, grown
    if with_ray:
        members |= {
            pid
            for pid, (_, cmd) in table.items()
            if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "/ray/" in cmd
        }
    return sum(_pss_mb(pid) for pid in members)


def measure(args: Args, backend: str) -> dict:
    """Run one child, sampling memory; its wall time, peak memory and own timings."""
    command = [
        sys.executable,
        __file__,
        "--child",
        backend,
        "--grid",
        args.grid,
        "--seeds",
        *map(str, args.seeds),
        "--jobs",
        str(args.jobs),
    ]
    command += ["--updates", str(args.updates)] if args.updates is not None else []
    command += ["--address", args.address] if args.address else []
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_and_ray_mb(process.pid, with_ray=backend == "cluster"))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"error: the {backend} measurement failed (exit {process.returncode})")
    report = json.loads(output.strip().splitlines()[-1])
    shutil.rmtree(report.pop("runs_dir"), ignore_errors=True)  # run folders of a measurement are not results
    return {
        "backend": backend,
        "wall_s": round(wall, 1),
        "peak_mb": round(peak[0]),
        "load_before": round(load, 2),
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in report.items()},
    }


def main(args: Args) -> list[dict]:
    if "cluster" in args.backends and not args.address:
        raise SystemExit("error: --backends cluster needs --address (e.g. auto)")
    rows = []
    for _ in range(args.repeats):
        for backend in args.backends:
            rows.append(measure(args, backend))
            print(json.dumps(rows[-1]), flush=True)  # a later failure must not lose this measurement
    reference: dict[str, str] = next((row["row_sha"] for row in rows if "row_sha" in row), {})
    for row in rows:  # which result rows differ from the first grid measured (Omikuji is not seedable)
        if "row_sha" in row:
            row["rows_differing"] = sorted(
                k for k in reference.keys() | row["row_sha"].keys() if reference.get(k) != row["row_sha"].get(k)
            )
            del row["row_sha"]
    print(f"\ngrid {args.grid}, seeds {args.seeds}, jobs {args.jobs}")
    print(
        "| backend | wall s | grid s | Ray start-up s | peak memory MB | Ray nodes used | load before | "
        "result rows differing from the first grid |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        differing = ", ".join(row["rows_differing"]) or "none" if "rows_differing" in row else "-"
        print(
            f"| {row['backend']} | {row['wall_s']} | {row.get('grid_s', '-')} | {row.get('ray_init_s') or '-'} | "
            f"{row['peak_mb']} | {row.get('nodes') or '-'} | {row['load_before']} | {differing} |"
        )
    if args.out_file:
        atomic_write_json(Path(args.out_file), {"args": asdict(args), "rows": rows})
    print(json.dumps({"args": asdict(args), "rows": rows}))
    return rows


if __name__ == "__main__":
    cli = parse_args(Args)
    if cli.child is not None:
        print(json.dumps(child(cli)))
    else:
        main(cli)

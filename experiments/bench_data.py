"""Seconds to load a dataset the first time (parse + write the cache) and from the cache, one thread.

    python experiments/bench_data.py --datasets delicious reuters21578 --baseline-ref 3fcd9b8

Rows per dataset: first load into an empty cache folder, cached load (median of `--repeats`), and
the cost of hashing every source file in full (what the cache key reads since the cache verifies
content, not size and mtime). With `--baseline-ref` the same measurements run, in a subprocess, on
the data layer of that git commit (exported with `git archive` into a temporary folder), so the
table shows this checkout and the baseline side by side. Prints a table, then one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from labelchain.experiments.run.common import REPO_ROOT, parse_args
from labelchain.experiments.run.threads import Threads, set_threads

DATA_DIR = REPO_ROOT.parent / "shared" / "data"  # passed explicitly: the baseline lives in a temporary folder
SOURCES = {"delicious": ("mulan/delicious", ("*.arff", "*.xml")), "reuters21578": ("reuters21578", ("reut2-*.sgm",))}


@dataclass
class Args(Threads):
    """Benchmark first (parsing) and cached loads of datasets, optionally against a baseline commit."""

    datasets: list[str] = field(default_factory=lambda: ["delicious", "reuters21578"])
    repeats: int = 5
    baseline_ref: str | None = field(default=None, metadata={"help": "git commit to compare against"})
    code_root: str | None = field(default=None, metadata={"help": "internal: import envs from this folder"})


def _use_code_root(root: str) -> None:
    """Import `envs` from `root` instead of this checkout (the baseline's data layer)."""
    sys.path.insert(0, root)
    for module in [m for m in sys.modules if m == "envs" or m.startswith("envs.")]:
        del sys.modules[module]


def _hash_seconds(name: str) -> float:
    folder, patterns = SOURCES[name]
    root = DATA_DIR / folder
    files = sorted(p for pattern in patterns for p in root.glob(pattern))
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as handle:
            hashlib.file_digest(handle, "sha256")
    return time.perf_counter() - start


def measure(args: Args) -> list[dict]:
    from labelchain.envs.data.loading import load_dataset

    rows = []
    for name in args.datasets:
        with tempfile.TemporaryDirectory() as cache_dir:
            start = time.perf_counter()
            load_dataset(name, data_dir=DATA_DIR, cache_dir=cache_dir)
            first = time.perf_counter() - start
            cached = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                load_dataset(name, data_dir=DATA_DIR, cache_dir=cache_dir)
                cached.append(time.perf_counter() - start)
        rows.append(
            {
                "dataset": name,
                "first_s": first,
                "cached_s": statistics.median(cached),
                "hash_s": _hash_seconds(name) if name in SOURCES else float("nan"),
            }
        )
    return rows


def _baseline(args: Args) -> list[dict]:
    with tempfile.TemporaryDirectory() as root:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", str(args.baseline_ref), "envs"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
        command = [
            sys.executable,
            __file__,
            "--code-root",
            root,
            "--repeats",
            str(args.repeats),
            "--datasets",
            *args.datasets,
        ]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env=dict(os.environ, LABELCHAIN_CACHE=root)
        )
        if done.returncode:
            raise SystemExit(f"baseline run failed:\n{done.stderr}")
        out = done.stdout
    return json.loads(out.strip().splitlines()[-1])["rows"]


def main() -> None:
    args = parse_args(Args)
    set_threads(args.threads or 1)
    if args.code_root:
        _use_code_root(args.code_root)
        print(json.dumps({"rows": measure(args)}))
        return
    rows = [dict(r, code="this checkout") for r in measure(args)]
    if args.baseline_ref:
        base = {r["dataset"]: r for r in _baseline(args)}
        rows = [x for r in rows for x in (r, dict(base[r["dataset"]], code=args.baseline_ref))]
    print(f"{'dataset':<14} {'code':<14} {'first load s':>12} {'cached load s':>13} {'hash sources s':>14}")
    for r in rows:
        print(f"{r['dataset']:<14} {r['code']:<14} {r['first_s']:>12.3f} {r['cached_s']:>13.4f} {r['hash_s']:>14.4f}")
    print(json.dumps({"benchmark": "data_loading", "rows": rows}))


if __name__ == "__main__":
    main()

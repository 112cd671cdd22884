"""Seconds to load a dataset the first time (parse + write the cache) and from the cache, one thread.

    python experiments/bench/bench_data.py --datasets delicious reuters21578 --baseline-ref 3fcd9b8

Rows per dataset: first load into an empty cache folder, cached load (median of `--repeats`), and
the cost of hashing every source file in full (what the cache key reads since the cache verifies
content, not size and mtime). With `--baseline-ref` the same measurements run, in a subprocess, on
the data layer of that git commit (exported with `git archive` into a temporary folder), so the
table shows this checkout and the baseline side by side. Prints a table, then one JSON line.

    python experiments/bench/bench_data.py --memory --baseline-ref 068d934

`--memory`: peak memory and time of a first load (no cache) of normal files (emotions, delicious)
and of files with one long token (an emotions ARFF with one 20,000- and one 2,000,000-digit value,
an XC file made from emotions with one 50,000-character value), each in a fresh subprocess: the
peak of the first load (tracemalloc, which sees numpy's buffers; and the growth of the peak RSS),
then the fastest of `--repeats` untraced loads; under an address-space cap (`--memory-cap-gb`
above the imported interpreter, so a baseline that would take tens of GB ends in MemoryError
instead of taking the machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labelchain.envs.data.locate import REPO_ROOT  # the repository root (run.common's is one level short)
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.threads import Threads, set_threads

# Passed explicitly: the baseline lives in a temporary folder.
DATA_DIR = Path(os.environ.get("LABELCHAIN_DATA") or REPO_ROOT.parent / "shared" / "data")
SOURCES = {"delicious": ("mulan/delicious", ("*.arff", "*.xml")), "reuters21578": ("reuters21578", ("reut2-*.sgm",))}


@dataclass
class Args(Threads):
    """Benchmark first (parsing) and cached loads of datasets, optionally against a baseline commit."""

    datasets: list[str] = field(default_factory=lambda: ["delicious", "reuters21578"])
    repeats: int = 5
    baseline_ref: str | None = field(default=None, metadata={"help": "git commit to compare against"})
    code_root: str | None = field(default=None, metadata={"help": "internal: import envs from this folder"})
    memory: bool = field(default=False, metadata={"help": "peak memory of normal and long-token files"})
    memory_cap_gb: float = 3.0
    probe: str | None = field(default=None, metadata={"help": "internal: load this path, print time and memory"})


def _use_code_root(root: str) -> None:
    """Import the data layer from `root` instead of this checkout (the baseline's)."""
    sys.path.insert(0, root)
    for module in [m for m in sys.modules if m.split(".")[0] in ("envs", "labelchain")]:
        del sys.modules[module]


def _load_dataset(code_root: str | None) -> Callable:
    """`load_dataset` of the code in `code_root`: `labelchain.envs`, or `envs` before the namespace."""
    import importlib

    old_layout = code_root is not None and not (Path(code_root) / "labelchain").is_dir()
    return importlib.import_module(("" if old_layout else "labelchain.") + "labelchain.envs.data.loading").load_dataset


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
    load_dataset = _load_dataset(args.code_root)

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


def _export(ref: str, root: str) -> None:
    """The data layer of commit `ref` (`envs/`, and `labelchain/` where it has one), unpacked into `root`."""
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-tree", "--name-only", ref], check=True, capture_output=True
    )
    paths = ["envs"] + (["labelchain"] if "labelchain" in listed.stdout.decode().split() else [])
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref, *paths], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", root], input=archive.stdout, check=True)


def _baseline(args: Args) -> list[dict]:
    with tempfile.TemporaryDirectory() as root:
        _export(str(args.baseline_ref), root)
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


def _probe(args: Args) -> None:
    """Child process: load `args.probe` (no cache) once traced, then `repeats` times timed; print JSON.

    Peak: tracemalloc's (numpy reports its buffers to it) and the growth of the peak RSS.
    """
    import tracemalloc

    load_dataset = _load_dataset(args.code_root)

    with open("/proc/self/statm") as handle:  # virtual size now, so the cap counts only the load
        virtual = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = virtual + int(args.memory_cap_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, outcome = [], "loaded"
    tracemalloc.start()
    for run in range(args.repeats + 1):
        start = time.perf_counter()
        try:
            load_dataset(Path(str(args.probe)), cache=False)
        except Exception as err:  # noqa: BLE001  (the outcome is the measurement)
            outcome, times = type(err).__name__, [time.perf_counter() - start]
            break
        finally:
            if run == 0:
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
        if run:
            times.append(time.perf_counter() - start)
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"seconds": min(times), "peak_mb": peak, "rss_growth_mb": rss, "outcome": outcome}))


def _long_token_cases(folder: Path) -> dict[str, Path]:
    """Dataset folders of the --memory benchmark, written into `folder` from the shared emotions."""
    from labelchain.envs.data.loading import load_dataset
    from labelchain.envs.data.textformats import write_xc

    emotions = DATA_DIR / "mulan" / "emotions"
    train = (emotions / "emotions-train.arff").read_text()
    first = train.index("@data\n") + len("@data\n")  # the first value of the first data row
    value_end = train.index(",", first)
    cases = {"emotions (normal)": emotions, "delicious (normal)": DATA_DIR / "mulan" / "delicious"}
    for digits in (20_000, 2_000_000):
        case = folder / f"arff{digits}"
        case.mkdir()
        (case / "x-train.arff").write_text(train[:first] + "0." + "1" * digits + train[value_end:])
        shutil.copy(emotions / "emotions-test.arff", case / "x-test.arff")
        shutil.copy(emotions / "emotions.xml", case / "x.xml")
        cases[f"ARFF, one {digits:,}-digit value"] = case
    case = folder / "xc"
    case.mkdir()
    ds = load_dataset(emotions, cache=False)
    for part in ("train", "test"):
        write_xc(case / f"{part}.txt", getattr(ds, part).X, getattr(ds, part).Y)
    text = (case / "train.txt").read_text()
    at = text.index(":", text.index("\n")) + 1  # the first feature value of the first document
    end = min(text.index(" ", at), text.index("\n", at))
    (case / "train.txt").write_text(text[:at] + "0." + "1" * 50_000 + text[end:])
    cases["XC, one 50,000-character value"] = case
    return cases


def _size_kb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1024


def memory(args: Args) -> list[dict]:
    """One fresh subprocess per (case, code): this checkout, then the baseline commit if given."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = _long_token_cases(Path(tmp))
        roots = {"this checkout": str(REPO_ROOT)}
        if args.baseline_ref:
            roots[args.baseline_ref] = str(Path(tmp) / "baseline")
            Path(roots[args.baseline_ref]).mkdir()
            _export(args.baseline_ref, roots[args.baseline_ref])
        for case, path in cases.items():
            for code, root in roots.items():
                command = [sys.executable, __file__, "--code-root", root, "--probe", str(path)]
                command += ["--repeats", str(args.repeats), "--memory-cap-gb", str(args.memory_cap_gb)]
                done = subprocess.run(command, check=False, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"probe {case} ({code}) failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(dict(result, case=case, code=code, size_kb=_size_kb(path)))
    return rows


def _print_memory(rows: list[dict], cap_gb: float) -> None:
    print(
        f"{'case':<32} {'code':<14} {'files KB':>8} {'peak MB':>8} {'x files':>7} {'RSS+ MB':>8} {'load s':>7}  outcome"
    )
    for r in rows:
        ratio = r["peak_mb"] * 1024 / r["size_kb"]
        refused = r["outcome"] == "MemoryError"  # tracemalloc counts the refused request: what it needed
        outcome = r["outcome"] + (f" (the peak is the request the {cap_gb:g} GB cap refused)" if refused else "")
        print(
            f"{r['case']:<32} {r['code']:<14} {r['size_kb']:>8.0f} {r['peak_mb']:>8.1f} {ratio:>7.1f} "
            f"{r['rss_growth_mb']:>8.1f} {r['seconds']:>7.3f}  {outcome}"
        )
    print(json.dumps({"benchmark": "data_loading_memory", "cap_gb": cap_gb, "rows": rows}))


def main() -> None:
    args = parse_args(Args)
    if args.probe:  # no torch in the probe: its import would count in the memory measured
        os.environ["OMP_NUM_THREADS"] = "1"
        if args.code_root:
            _use_code_root(args.code_root)
        _probe(args)
        return
    if args.memory:
        _print_memory(memory(args), args.memory_cap_gb)
        return
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

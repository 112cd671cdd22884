"""Interrupted train_rl runs: a long run on emotions stopped by a signal once it trains (the Ctrl-C and
SIGTERM tests), and the part of a finished run that a resumed run must reproduce exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_rl.py"


def interrupt_long_run(runs_dir: Path, signal_number: int, timeout: float = 120.0, times: int = 1) -> tuple[int, str]:
    """Start freq2rare for 100,000 updates, send `signal_number` (`times` times, 50 ms apart) after its
    first updates; (exit code, output)."""
    command = [
        sys.executable, str(SCRIPT), "--dataset", "emotions", "--learners", "freq2rare", "--updates", "100000",
        "--hidden-size", "16", "--eval-every", "100000", "--checkpoint-every", "100000",
        "--runs-dir", str(runs_dir), "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.monotonic() + timeout  # a bound on waiting for the start, not an assertion on speed
    while not list(runs_dir.glob("*/freq2rare/events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # let a few updates run
    for _ in range(times):
        process.send_signal(signal_number)
        time.sleep(0.05)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def deterministic_part(run_dir: Path) -> dict:
    """metrics.json without wall times (the only numbers allowed to differ between identical runs)."""
    report = json.loads((run_dir / "metrics.json").read_text())
    report.pop("timing")
    for result in report["learners"].values():
        result.pop("timing")
    return report

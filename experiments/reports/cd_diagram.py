"""Critical-difference diagrams (Demšar 2006, Fig. 1): mean ranks on an axis, the Nemenyi CD as a
bar, and thick lines joining methods whose mean ranks are within CD of each other.

matplotlib is in the `notebooks` extra, so it is imported only when a diagram is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelchain.envs.atomic import atomic_write


def cliques(mean_ranks: Sequence[float] | np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs [i, j] (indices into the ranks sorted ascending) whose spread is <= cd, j > i:
    the groups a CD diagram joins (no pair inside differs significantly)."""
    r = np.sort(np.asarray(mean_ranks, dtype=np.float64))
    runs: list[tuple[int, int]] = []
    for i in range(r.size):
        j = int(np.searchsorted(r, r[i] + cd + 1e-12, side="right")) - 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return runs


def draw(
    methods: Sequence[str],
    mean_ranks: Sequence[float] | np.ndarray,
    cd: float,
    title: str,
    path: str | Path,
    width_in: float = 8.0,
) -> Path:
    """Write the CD diagram as PNG at `path` (atomically) and return the path. Rank 1 (best) is left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.style.context("default"):  # the same PNG whatever a notebook set in rcParams
        return _draw(methods, mean_ranks, cd, title, Path(path), width_in, plt)


def _draw(
    methods: Sequence[str],
    mean_ranks: Sequence[float] | np.ndarray,
    cd: float,
    title: str,
    path: Path,
    width_in: float,
    plt: Any,
) -> Path:
    order = np.argsort(np.asarray(mean_ranks), kind="stable")
    names = [methods[i] for i in order]
    r = np.asarray(mean_ranks, dtype=np.float64)[order]
    k = len(names)
    half = (k + 1) // 2
    rows = max(half, k - half)
    fig_h = 1.5 + 0.3 * rows
    fig, ax = plt.subplots(figsize=(width_in, fig_h))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.6, hi + 0.6)
    ax.set_ylim(-(rows + 1.2), 2.0)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="k", lw=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.12, color="k", lw=1)
        ax.text(t, 0.22, str(t), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.15, lo, lo + cd, color="k", lw=2)
    ax.text(lo + cd / 2, 1.25, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(zip(names, r, strict=True)):
        left = i < half
        level = -(i + 1) if left else -(k - i)
        x_text = lo - 0.5 if left else hi + 0.5
        ax.plot([rank, rank, x_text], [0, level, level], color="k", lw=0.8)
        ax.text(
            x_text + (-0.05 if left else 0.05),
            level,
            f"{name} ({rank:.2f})" if not left else f"({rank:.2f}) {name}",
            ha="right" if left else "left",
            va="center",
            fontsize=9,
        )
    for n_line, (i, j) in enumerate(cliques(r, cd)):
        y = -0.3 - 0.3 * (n_line % 3)  # staggered so that overlapping groups stay apart
        ax.hlines(y, r[i] - 0.03, r[j] + 0.03, color="tab:red", lw=3, alpha=0.8)
    ax.set_title(title, fontsize=10)
    fig.subplots_adjust(left=0.22, right=0.78, top=0.85, bottom=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)
    return path

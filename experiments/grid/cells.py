"""What a grid is made of, below any backend: a `Cell`, reports from inside a running cell, the progress line.

Both backends (experiments/grid/execution.py runs cells locally, experiments/grid/ray_backend.py as Ray
Tune trials) build on these, so neither imports the other's module for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


from labelchain.envs.metrics import is_better
from labelchain.envs.progress import progress_bar


@dataclass(frozen=True)
class Cell:
    """One grid cell: `function(**kwargs)` -> JSON-able result (None = stopped), using `cpus` CPUs."""

    key: str
    function: Callable[..., dict[str, Any] | None]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cpus: int = 1


# ----------------------------------------------------------------------------- progress line
class Progress:
    """One live line: cells done / running / failed, and the best validation score reported so far."""

    def __init__(self, cells: list[Cell], done_before: int, metric: str, enabled: bool) -> None:
        self.metric = metric
        self.running: set[str] = set()
        self.failed: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.done, self.total = done_before, len(cells) + done_before
        self.bar = progress_bar(
            enabled,
            total=len(cells) + done_before,
            initial=done_before,
            desc="grid",
            unit="cell",
            position=0,
            dynamic_ncols=True,
        )

    def start(self, key: str) -> None:
        self.running.add(key)
        self._show()

    def scored(self, key: str, metrics: dict[str, Any]) -> None:
        score = metrics.get(f"val/{self.metric}")
        if isinstance(score, (int, float)) and is_better(self.metric, score, self.best and self.best[0]):
            self.best = (float(score), f"{key} {metrics.get('learner', '')}".strip())
            self._show()

    def finish(self, key: str, ok: bool) -> None:
        self.running.discard(key)
        if ok:
            self.done += 1
            self.bar.update(1)
        else:
            self.failed.add(key)
        self._show()

    def line(self) -> str:
        best = f"best val {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "best -"
        return f"done {self.done}/{self.total}, running {len(self.running)}, failed {len(self.failed)}, {best}"

    def _show(self) -> None:
        self.bar.set_postfix_str(self.line(), refresh=True)

    def close(self) -> None:
        self.bar.close()

"""One results-file format for every grid (orderings, strength, trees, guidance, ...) and its one loader.

On disk a results file is one flat JSON object: the header keys ``format_version`` (an int), ``kind``
(which grid wrote it), ``command`` and ``args`` (how it was made, where known), ``rows`` (a list of
row objects), then the grid's named optional sections (``cells``, ``bootstrap``, ``notes``, ``shapes``,
``commands``, ...). Kept flat so a renderer reads a loaded file's ``payload()`` exactly as it read the
old files, and the committed reports re-render byte-identically.

Files written before the version field (every committed one) are read as version 0 and converted on
read: ``rows`` (absent in scale/ablations: an empty list) and the rest as sections. Anything else (not
an object, rows not a list, a version this code does not know) is one ``ResultsFileError`` line naming
the file and what is wrong.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelchain.envs.atomic import atomic_write_json

FORMAT_VERSION = 1
HEADER = ("format_version", "kind", "command", "args", "rows")


class ResultsFileError(ValueError):
    """A results file this code cannot read; the message is one line naming the file and the reason
    (run_script prints it as one line). Not an ArgsError: this module stays light (no torch) for notebooks."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class ResultsFile:
    """A grid's results: how they were made, their rows, and the grid's own named sections."""

    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    command: str | None = None  # None: the file never said (old strength/score_modes files)
    args: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def payload(self) -> dict[str, Any]:
        """The flat object written to disk (and handed to renderers); absent header fields stay absent."""
        head: dict[str, Any] = {"format_version": FORMAT_VERSION, "kind": self.kind}
        if self.command is not None:
            head["command"] = self.command
        if self.args is not None:
            head["args"] = self.args
        return {**head, "rows": self.rows, **self.sections}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], kind: str) -> ResultsFile:
        """A flat object (a grid's in-memory results, old or new) as a ResultsFile of `kind`."""
        sections = {k: v for k, v in payload.items() if k not in HEADER}
        return cls(kind, list(payload.get("rows", [])), payload.get("command"), payload.get("args"), sections)


def load_results(path: str | Path, kind: str | None = None, missing_ok: bool = False) -> ResultsFile:
    """The results file at `path`, old shapes converted. `kind`: the grid expected (a file of another
    kind is refused); None takes the file's (an old file's: its name's stem).

    `missing_ok`: an absent file is an empty ResultsFile (a grid's first run)."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return ResultsFile(kind or path.stem)
        raise ResultsFileError(path, "no such results file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsFileError(path, f"not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ResultsFileError(path, f"a results file is a JSON object, got {type(data).__name__}")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= FORMAT_VERSION:
        raise ResultsFileError(
            path, f"format_version {version!r} is not one this code reads (0..{FORMAT_VERSION}); update labelchain"
        )
    if version and kind is not None and data.get("kind") != kind:
        raise ResultsFileError(path, f"a {data.get('kind')!r} results file, expected {kind!r}")
    kind = kind or (data.get("kind") if version else None) or path.stem
    if not isinstance(data.get("rows", []), list):
        raise ResultsFileError(path, f"'rows' must be a list, got {type(data['rows']).__name__}")
    if not isinstance(data.get("args", {}), dict):
        raise ResultsFileError(path, f"'args' must be an object, got {type(data['args']).__name__}")
    return ResultsFile.from_payload(data, kind)


def save_results(path: str | Path, results: ResultsFile) -> None:
    """Write `results` in the current format, atomically (envs.atomic)."""
    atomic_write_json(path, results.payload())


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an OS lock on `<path>.lock` (several processes may write one results file)."""
    with open(Path(path).with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def merge_rows_locked(
    path: str | Path,
    fresh: ResultsFile,
    key: Callable[[dict[str, Any]], Any],
    merge_sections: Callable[[ResultsFile, ResultsFile], dict[str, Any]] | None = None,
    then: Callable[[ResultsFile], None] | None = None,
) -> ResultsFile:
    """Under the lock: read the file at `path` (if any), keep its rows whose `key` no fresh row has, add
    `fresh.rows`, and write the result; `merge_sections(previous, fresh)` gives the merged sections
    (default: fresh's); `then(merged)` runs still under the lock (e.g. rewrite the report). Returns what
    was written."""
    with locked(path):
        previous = load_results(path, fresh.kind, missing_ok=True)
        new = {key(row) for row in fresh.rows}
        kept = [row for row in previous.rows if key(row) not in new]
        sections = merge_sections(previous, fresh) if merge_sections else fresh.sections
        merged = ResultsFile(fresh.kind, kept + fresh.rows, fresh.command, fresh.args, sections)
        save_results(path, merged)
        if then is not None:
            then(merged)
    return merged

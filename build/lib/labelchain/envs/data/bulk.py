"""Bulk token checks shared by the ARFF and the sparse text readers.

Both readers collect every token of a file first and convert them in one numpy call; only when that
fails do they walk the tokens to name the first bad one (file and line), so the fast path stays fast
and the error stays precise. One copy of each check keeps the two readers' rules from drifting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelchain.envs.data.errors import DataFormatError


def to_numbers(tokens: list[str], dtype: type, token_lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """All `tokens` as `dtype` (np.int64 or a float type); a bad token raises naming `what` and its line."""
    if not tokens:
        return np.zeros(0, dtype=dtype)
    try:
        with np.errstate(over="ignore"):  # a float32 overflow becomes inf, rejected by the caller
            return np.asarray(tokens).astype(dtype)
    except (ValueError, OverflowError):
        kind = int if dtype is np.int64 else float
        for token, line in zip(tokens, token_lines):
            try:
                value = kind(token)
            except ValueError:
                value = None
            if value is None or (kind is int and not -(2**63) <= value < 2**63):
                raise DataFormatError(
                    path,
                    f"{what} {token!r} is not {'an integer' if kind is int else 'a number'}"
                    + (" in the int64 range" if value is not None else ""),
                    line=int(line),
                ) from None
        raise


def first_repeat(rows: np.ndarray, ids: np.ndarray) -> int | None:
    """Position of the first entry whose (row, id) pair an earlier entry already has, else None.

    A row naming a feature or attribute twice would silently have its values added by scipy, so
    both readers refuse it; "first" is in (row, id) order, enough to point at one offending line.
    """
    if ids.size < 2:
        return None
    order = np.lexsort((ids, rows))
    same = np.flatnonzero((np.diff(rows[order]) == 0) & (np.diff(ids[order]) == 0))
    return int(order[same[0] + 1]) if same.size else None

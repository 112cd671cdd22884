"""Bulk token checks shared by the ARFF and the sparse text readers.

Both readers collect every token of a file first and convert them in one numpy call; only when that
fails do they walk the tokens to name the first bad one (file and line), so the fast path stays fast
and the error stays precise. One copy of each check keeps the two readers' rules from drifting.

Numbers follow ARFF's numeric grammar, ASCII only: `[+-]digits[.digits][(e|E)[+-]digits]` (either
side of the point may be empty, not both), spaces or tabs around it; `nan`/`inf`/`infinity` are read
so the callers can refuse them as non-finite by name. Python's float()/int() and numpy also accept
`1_000`, Arabic-Indic and other Unicode digits, and Unicode spaces: those are refused here.
Memory: the bulk call converts a fixed-width byte array, n tokens x the longest; tokens longer than
`BULK_WIDTH` are converted one by one instead, so one huge token costs its own length, not n times
it (a 20,000-digit value among 70,000 tokens took 4.8 GB as a Unicode array).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labelchain.envs.data.errors import DataFormatError

BULK_WIDTH = 40  # longest token converted in the bulk numpy call (float64 needs at most ~25 chars)
FLOAT_TOKEN = re.compile(r"[ \t]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ \t]*", re.ASCII)
SPECIAL_TOKEN = re.compile(r"[ \t]*[+-]?(?:inf|infinity|nan)[ \t]*", re.ASCII | re.IGNORECASE)
INT_TOKEN = re.compile(r"[ \t]*[+-]?\d+[ \t]*", re.ASCII)
# Every character a token of the grammar (or nan/inf) can hold; anything else sends a file to the
# strict per-token path. A bytes.translate that deletes these leaves b"" for a clean file.
_GRAMMAR_BYTES = b"0123456789.+-eE \tnaifNAIFtyTY"
_INT64 = (-(2**63), 2**63)


def token_number(token: str, integer: bool) -> float | int | None:
    """One token under the strict grammar: its value, or None if it is not a number (or not int64)."""
    if integer:
        if INT_TOKEN.fullmatch(token) is None:
            return None
        text = token.strip(" \t")
        sign = -1 if text[0] == "-" else 1
        digits = text.lstrip("+-").lstrip("0")
        if len(digits) > 19:  # beyond int64 whatever the digits (and int() refuses over 4300 digits)
            return None
        value = sign * int(digits or "0")
        return value if _INT64[0] <= value < _INT64[1] else None
    if FLOAT_TOKEN.fullmatch(token) is None and SPECIAL_TOKEN.fullmatch(token) is None:
        return None
    return float(token)


def parse_numbers(tokens: Sequence[str], integer: bool) -> tuple[np.ndarray, int | None]:
    """(values float64 or int64, None), or (partial values, position of the first bad token).

    Fast path: when the joined text holds only grammar characters, one numpy cast of a byte array at
    most `BULK_WIDTH` wide; longer tokens one by one. Any failure: the strict per-token walk.
    """
    dtype = np.int64 if integer else np.float64
    n = len(tokens)
    if not n:
        return np.zeros(0, dtype=dtype), None
    joined = "".join(tokens)
    if joined.isascii() and not joined.encode("ascii").translate(None, _GRAMMAR_BYTES):
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=n)
        long = np.flatnonzero(lengths > BULK_WIDTH)
        short = list(tokens)
        for k in long.tolist():
            short[k] = "0"
        width = BULK_WIDTH if long.size else max(1, int(lengths.max()))
        try:
            with np.errstate(over="ignore"):
                values = np.array(short, dtype=f"S{width}").astype(dtype)
        except (ValueError, OverflowError):
            pass
        else:
            for k in long.tolist():
                value = token_number(tokens[k], integer)
                if value is None:
                    return values, k
                values[k] = value
            return values, None
    values = np.zeros(n, dtype=dtype)
    for k, token in enumerate(tokens):
        value = token_number(token, integer)
        if value is None:
            return values, k
        values[k] = value
    return values, None


def to_numbers(tokens: list[str], dtype: type, token_lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """All `tokens` as `dtype` (np.int64 or a float type); a bad token raises naming `what` and its line."""
    integer = dtype is np.int64
    values, bad = parse_numbers(tokens, integer)
    if bad is not None:
        token = tokens[bad]
        in_range = integer and INT_TOKEN.fullmatch(token) is not None
        raise DataFormatError(
            path,
            f"{what} {shown(token)} is not {'an integer' if integer else 'a number'}"
            + (" in the int64 range" if in_range else ""),
            line=int(token_lines[bad]),
        )
    if integer:
        return values
    with np.errstate(over="ignore"):  # a float32 overflow becomes inf, rejected by the caller
        return values.astype(dtype)


def shown(token: str, limit: int = 60) -> str:
    """repr of a token for an error message, cut to `limit` characters (a token may be megabytes)."""
    token = token.strip()
    if len(token) <= limit:
        return repr(token)
    return repr(token[:limit]) + f"... ({len(token):,} characters)"


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

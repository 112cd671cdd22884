"""Action ids as integers, for both environments and the MCG constraint.

Why: `int(1.5)` and `np.asarray(..., dtype=np.int64)` truncate, so a float action 1.5 silently
became label 1, where Gymnasium's `Discrete` refuses it. Accepted: Python ints (and bools), numpy
integer scalars and integer arrays (as SB3 and torch samplers give them), and floats that are whole
numbers (1.0 reads as 1); anything else (1.5, nan, inf, a string) is a ValueError naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INT64_MAX = np.iinfo(np.int64).max


def integer_array(values: Any, what: str = "action") -> np.ndarray:
    """`values` as an int64 array of the same shape; ValueError at the first non-integral entry."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{what} {values!r} is not an integer ({err})") from None
    kind = array.dtype.kind
    if kind in "ib":
        return array.astype(np.int64, copy=False)
    if kind == "u":
        if array.size and int(array.max()) > _INT64_MAX:
            raise ValueError(f"{what} {int(array.max())} is not an integer in the int64 range")
        return array.astype(np.int64)
    flat = array.reshape(-1)
    if kind == "f":
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(flat) & (flat == np.trunc(flat)) & (np.abs(flat) <= _INT64_MAX)
        if whole.all():
            return array.astype(np.int64)
        k = int(np.flatnonzero(~whole)[0])
        raise ValueError(f"{what}{_at(array, k)} {flat[k].item()!r} is not an integer (action ids are whole numbers)")
    if kind == "O":
        for k, item in enumerate(flat):
            if not isinstance(item, (int, np.integer)) or not -_INT64_MAX - 1 <= int(item) <= _INT64_MAX:
                raise ValueError(f"{what}{_at(array, k)} {item!r} is not an integer in the int64 range")
        return array.astype(np.int64)
    raise ValueError(f"{what} {values!r} is not an integer (dtype {array.dtype})")


def _at(array: np.ndarray, flat_index: int) -> str:
    """`[i, j]` of a flat position, for messages ("" for a scalar)."""
    if not array.ndim:
        return ""
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat_index, array.shape)) + "]"


def integer_action(action: Any) -> int:
    """One action id as a Python int (a 0-d or one-element array is fine); ValueError otherwise."""
    if isinstance(action, (int, np.integer)):  # the common case, without an array (a step is microseconds)
        return int(action)
    array = integer_array(action)
    if array.size != 1:
        raise ValueError(f"action must be one integer, got shape {array.shape}")
    return int(array.reshape(-1)[0])

"""The one way labelchain writes and reads torch files (checkpoints, policy weights).

Reading: always `torch.load(..., weights_only=True)`. Run folders and saved policies are shared
between people, and a full unpickler runs whatever a crafted file asks for (a `__reduce__` payload)
before any check could look at it. The weights-only unpickler builds tensors, dicts, lists, tuples,
strings and numbers and refuses everything else, so nothing in a file can run code. Checkpoints
written before this rule kept the data sampler's permutation as a numpy array: numpy's array
reconstruction (plain data, no code) is allowed too, so those still load.

Writing: `torch.save` into memory, then the bytes go through `envs.atomic.atomic_write`. A full disk
then surfaces as Python's `OSError(ENOSPC)` from the file write (which callers turn into the one-line
"disk is full ... resume with" message), not as torch's `RuntimeError: [enforce fail at
inline_container.cc ...]` from inside its zip writer.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from labelchain.envs.atomic import atomic_write


class UnsafeFileError(ValueError):
    """A torch file that is unreadable, or that asks the unpickler for more than plain data."""


def _legacy_numpy_globals() -> list[Any]:
    """What a pickled plain numpy array needs (checkpoints written before the sampler stored a list)."""
    core = getattr(np, "_core", None) or np.core
    dtype_classes = [
        type(np.dtype(code)) for code in ("int64", "int32", "uint32", "uint64", "float32", "float64", "bool")
    ]
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *dtype_classes]


def load_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`; any failure is one line naming the file."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found:
            raise UnsafeFileError(
                f"{path}: refused: it asks to run {found.group(1)} when loaded (only tensors and plain data are "
                "read from torch files; do not use files from an untrusted source)"
            ) from None
        raise UnsafeFileError(f"{path}: not a readable torch file ({_first_line(error)})") from None
    except (RuntimeError, EOFError, ValueError, AttributeError, TypeError, IndexError, KeyError) as error:
        raise UnsafeFileError(
            f"{path}: not a readable torch file, truncated or damaged ({_first_line(error)})"
        ) from None


def save_torch_file(path: str | Path, payload: Any, write: Callable[..., None] = atomic_write) -> None:
    """`torch.save` to memory, then an atomic write of the bytes (a full disk is an OSError).
    `write` is `envs.atomic.atomic_write` (a caller may pass its own module's reference to it)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write(path, lambda handle: handle.write(buffer.getbuffer()))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")

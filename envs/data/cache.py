"""On-disk cache of parsed datasets, so a second load of Delicious or Reuters takes milliseconds.

Key: a hash of the loader version, the load options and each source file's path, size and mtime,
so editing, replacing or touching a source file (or changing the featurizer) invalidates the entry.
Layout: `<cache_dir>/<name>-<key>/` with `{train,test}_{X,Y}.npz|.npy` and `meta.json` (names).
Every file is written to a temporary name in the same folder and moved into place with os.replace;
meta.json goes last, so a reader never sees a half-written entry as complete.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from envs.atomic import atomic_write
from envs.data.dataset import Dataset, Split

CACHE_FORMAT = 1


def default_cache_dir(repo_root: Path) -> Path:
    env = os.environ.get("LABELCHAIN_CACHE")
    return Path(env) if env else repo_root / ".cache" / "labelchain"


def cache_key(version: str, options: dict[str, Any], files: list[Path]) -> str:
    """Hex digest over loader version, options and (path, size, mtime_ns) of every source file."""
    stamp = []
    for path in sorted(files):
        info = path.stat()
        stamp.append([str(path.resolve()), info.st_size, info.st_mtime_ns])
    blob = json.dumps(
        {"format": CACHE_FORMAT, "version": version, "options": options, "files": stamp},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _save_matrix(folder: Path, stem: str, matrix: np.ndarray | sp.csr_matrix) -> str:
    if sp.issparse(matrix):
        name = f"{stem}.npz"
        atomic_write(folder / name, lambda h: sp.save_npz(h, sp.csr_matrix(matrix), compressed=False))
    else:
        name = f"{stem}.npy"
        atomic_write(folder / name, lambda h: np.save(h, matrix, allow_pickle=False))
    return name


def _load_matrix(path: Path) -> np.ndarray | sp.csr_matrix:
    if path.suffix == ".npz":
        return sp.load_npz(path).tocsr()
    return np.load(path, allow_pickle=False)


def save_dataset(dataset: Dataset, folder: Path) -> None:
    """Write `dataset` into `folder` (created if needed); meta.json last marks the entry complete."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split_name in ("train", "test"):
        split: Split = getattr(dataset, split_name)
        files[f"{split_name}_X"] = _save_matrix(folder, f"{split_name}_X", split.X)
        files[f"{split_name}_Y"] = _save_matrix(folder, f"{split_name}_Y", split.Y)
    meta = {
        "format": CACHE_FORMAT,
        "name": dataset.name,
        "source": dataset.source,
        "label_names": dataset.label_names,
        "feature_names": dataset.feature_names,
        "files": files,
    }
    payload = json.dumps(meta).encode()
    atomic_write(folder / "meta.json", lambda h: h.write(payload))


def load_cached(folder: Path) -> Dataset | None:
    """The dataset stored in `folder`, or None when the entry is absent, incomplete or unreadable."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        files = meta["files"]
        splits = {
            name: Split(_load_matrix(folder / files[f"{name}_X"]), _load_matrix(folder / files[f"{name}_Y"]))
            for name in ("train", "test")
        }
        return Dataset(
            name=meta["name"], train=splits["train"], test=splits["test"],
            label_names=list(meta["label_names"]), feature_names=list(meta["feature_names"]),
            source=meta["source"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry is rebuilt, never trusted

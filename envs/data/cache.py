"""On-disk cache of parsed datasets, so a second load of Delicious or Reuters takes milliseconds.

Where: LABELCHAIN_CACHE, else `$XDG_CACHE_HOME/labelchain` (when XDG_CACHE_HOME is an absolute
path), else `~/.cache/labelchain`; dependency-free, the XDG rule `platformdirs` applies on Linux.
Key: a hash of the loader version, the load options and each source file's resolved path and full
content (sha256), so an edit that keeps size and mtime still invalidates the entry.
Layout: `<cache_dir>/<name>-<key>/` with `{train,test}_{X,Y}.npz|.npy` and `meta.json` (names,
metadata, the entry's own `<name>-<key>`, the sha256 of every array file, and a sha256 of
meta.json's own body). A reader verifies every checksum before it trusts a byte, and that the entry
was written for the key it is read under (files of one dataset's entry copied into another's folder
pass every checksum); a missing, cut, empty, altered or foreign entry is reported as a problem so
the loader rebuilds it. Files are written atomically (envs.atomic); meta.json goes last.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from labelchain.envs.atomic import atomic_write
from labelchain.envs.data.dataset import Dataset, Split

CACHE_FORMAT = 3  # 3: meta.json records the entry's key


def default_cache_dir() -> Path:
    """LABELCHAIN_CACHE, else the platform's user cache folder (XDG), never inside the checkout."""
    override = os.environ.get("LABELCHAIN_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "labelchain"


def file_digest(path: Path) -> str:
    """sha256 of the whole file (about 20 ms for the 27 MB of Reuters SGML)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_key(version: str, options: dict[str, Any], files: list[Path]) -> str:
    """Hex digest over loader version, options and (resolved path, content hash) of every source file."""
    stamp = [[str(path.resolve()), file_digest(path)] for path in sorted(files)]
    blob = json.dumps(
        {"format": CACHE_FORMAT, "version": version, "options": options, "files": stamp},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _matrix_bytes(matrix: np.ndarray | sp.csr_matrix) -> tuple[str, bytes]:
    handle = io.BytesIO()
    if sp.issparse(matrix):
        sp.save_npz(handle, sp.csr_matrix(matrix), compressed=False)
        return ".npz", handle.getvalue()
    np.save(handle, matrix, allow_pickle=False)
    return ".npy", handle.getvalue()


def _load_matrix(suffix: str, payload: bytes) -> np.ndarray | sp.csr_matrix:
    if suffix == ".npz":
        return sp.load_npz(io.BytesIO(payload)).tocsr()
    return np.load(io.BytesIO(payload), allow_pickle=False)


def _writer(payload: bytes) -> Callable[[IO[bytes]], int]:
    return lambda handle: handle.write(payload)


def _body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_dataset(dataset: Dataset, folder: Path, key: str) -> None:
    """Write `dataset` into `folder` (created if needed) as the entry of `key`; meta.json goes last."""
    folder.mkdir(parents=True, exist_ok=True)
    files, checksums = {}, {}
    for split_name in ("train", "test"):
        split: Split = getattr(dataset, split_name)
        for part in ("X", "Y"):
            suffix, payload = _matrix_bytes(getattr(split, part))
            name = f"{split_name}_{part}{suffix}"
            atomic_write(folder / name, _writer(payload))
            files[f"{split_name}_{part}"] = name
            checksums[name] = hashlib.sha256(payload).hexdigest()
    body = {
        "format": CACHE_FORMAT,
        "key": key,
        "name": dataset.name,
        "source": dataset.source,
        "label_names": dataset.label_names,
        "feature_names": dataset.feature_names,
        "metadata": dataset.metadata,
        "files": files,
        "sha256": checksums,
    }
    payload = json.dumps({"body": body, "body_sha256": _body_digest(body)}).encode()
    atomic_write(folder / "meta.json", lambda h: h.write(payload))


def load_cached(folder: Path, key: str) -> tuple[Dataset | None, str | None]:
    """(dataset, None) for a sound entry of `key`; (None, None) when there is none; (None, why) else."""
    meta_path = folder / "meta.json"
    try:
        if not folder.exists():
            return None, None
        if not meta_path.is_file():
            return None, "meta.json is missing (an interrupted write?)"
        meta = json.loads(meta_path.read_bytes())
        body = meta["body"]
        if meta["body_sha256"] != _body_digest(body):
            return None, "meta.json does not match its checksum"
        if body["format"] != CACHE_FORMAT:
            return None, f"cache format {body['format']} is not {CACHE_FORMAT}"
        if body["key"] != key:
            return None, f"it holds the entry of {body['key']!r}, not of {key!r} (files copied from another entry?)"
        matrices = {}
        for key, name in body["files"].items():
            payload = (folder / name).read_bytes()
            if hashlib.sha256(payload).hexdigest() != body["sha256"][name]:
                return None, f"{name} does not match its checksum"
            matrices[key] = _load_matrix(Path(name).suffix, payload)
        return Dataset(
            name=body["name"],
            train=Split(matrices["train_X"], matrices["train_Y"]),
            test=Split(matrices["test_X"], matrices["test_Y"]),
            label_names=list(body["label_names"]),
            feature_names=list(body["feature_names"]),
            source=body["source"],
            metadata=dict(body["metadata"]),
        ), None
    except Exception as err:  # noqa: BLE001  (any unreadable entry is rebuilt, never trusted)
        return None, f"unreadable ({type(err).__name__}: {err})"

"""The parsed-dataset cache verifies what it returns and repairs itself, saying so."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.data.cache import default_cache_dir
from labelchain.envs.data.loading import REPO_ROOT, load_dataset


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may touch the user's real cache."""
    monkeypatch.setenv("LABELCHAIN_CACHE", str(tmp_path / "default-cache"))


def toy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("3 4 3\n0,2 0:1.5 3:2\n1 1:1\n2 2:0.5\n")
    (folder / "test.txt").write_text("1 4 3\n0 0:1\n")
    return folder


def same(a, b) -> bool:
    return (
        all((x.X != y.X).nnz == 0 and (x.Y != y.Y).nnz == 0 for x, y in ((a.train, b.train), (a.test, b.test)))
        and a.label_names == b.label_names
        and a.feature_names == b.feature_names
    )


def entry_of(cache_dir: Path) -> Path:
    (entry,) = list(cache_dir.iterdir())
    return entry


def test_default_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LABELCHAIN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "labelchain"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "labelchain"
    assert REPO_ROOT not in default_cache_dir().parents
    monkeypatch.setenv("LABELCHAIN_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_default_load_writes_to_default_cache(tmp_path: Path) -> None:
    load_dataset(toy(tmp_path / "toy"))
    assert (entry_of(tmp_path / "default-cache") / "meta.json").is_file()


@pytest.mark.parametrize(
    "damage", ["flip_array", "cut_array", "empty_array", "cut_meta", "empty_meta", "rename_label", "no_meta"]
)
def test_damaged_entry_is_rebuilt_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    folder, cache_dir = toy(tmp_path / "toy"), tmp_path / "cache"
    clean = load_dataset(folder, cache_dir=cache_dir)
    entry = entry_of(cache_dir)
    array, meta = entry / "train_X.npz", entry / "meta.json"
    if damage == "flip_array":  # inside the stored values, so the file still parses
        raw = bytearray(array.read_bytes())
        raw[raw.index(np.float32(1.5).tobytes())] ^= 0x40
        array.write_bytes(bytes(raw))
    elif damage == "cut_array":
        array.write_bytes(array.read_bytes()[:100])
    elif damage == "empty_array":
        array.write_bytes(b"")
    elif damage == "cut_meta":
        meta.write_bytes(meta.read_bytes()[:50])
    elif damage == "empty_meta":
        meta.write_bytes(b"")
    elif damage == "rename_label":  # still valid JSON
        meta.write_text(meta.read_text().replace('"label_names": ["0"', '"label_names": ["9"'))
    else:
        meta.unlink()
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        again = load_dataset(folder, cache_dir=cache_dir)
    assert same(again, clean) and again.train.X[0, 0] == 1.5
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and str(entry) in warnings[0] and "rebuilding" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        assert same(load_dataset(folder, cache_dir=cache_dir), clean)  # repaired: silent again
    assert not caplog.records


def test_source_edit_with_same_size_and_mtime_is_seen(tmp_path: Path) -> None:
    folder, cache_dir = toy(tmp_path / "toy"), tmp_path / "cache"
    load_dataset(folder, cache_dir=cache_dir)
    path = folder / "train.txt"
    stat = path.stat()
    path.write_text(path.read_text().replace("1.5", "2.5"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_dataset(folder, cache_dir=cache_dir).train.X[0, 0] == 2.5


def test_unwritable_cache_folder_loads_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")  # unwritable even for root
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        ds = load_dataset(toy(tmp_path / "toy"), cache_dir=blocker)
    assert ds.train.X[0, 0] == 1.5 and sp.issparse(ds.train.X)
    (record,) = caplog.records
    assert "could not write the dataset cache" in record.getMessage() and str(blocker) in record.getMessage()
    assert "\n" not in record.getMessage()

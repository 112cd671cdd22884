"""A user's own MULAN / MEKA / XC data: by name under the data folder or by path, with or without a
shipped split, with string, ID and nominal attributes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.data.loading import load_dataset


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELCHAIN_CACHE", str(tmp_path / "cache"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# genbase-like: an ID attribute (one protein name per row, 24 rows), a YES/NO nominal declared YES
# first, a three-valued nominal, a string attribute (quoted, with a comma), labels last.
N_ROWS = 24
HEADER = (
    "@relation genbase\n@attribute protein {" + ",".join(f"P{i}" for i in range(N_ROWS)) + "}\n"
    "@attribute motif {YES,NO}\n@attribute size numeric\n@attribute shape {round,flat,long}\n"
    "@attribute note string\n@attribute PDOC1 {0,1}\n@attribute PDOC2 {0,1}\n@data\n"
)
ROWS = [
    f"P{i},{'YES' if i % 2 == 0 else 'NO'},{i + 1.5},{('round', 'flat', 'long')[i % 3]},'a, {i}',"
    f"{int(i % 2 == 0 or i % 3 == 2)},{int(i % 3 > 0)}"
    for i in range(N_ROWS)
]
XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
    '<label name="PDOC1"></label><label name="PDOC2"></label></labels>\n'
)


def genbase_pair(folder: Path) -> Path:
    write(folder / "genbase-train.arff", HEADER + "\n".join(ROWS[:18]) + "\n")
    write(folder / "genbase-test.arff", HEADER + "\n".join(ROWS[18:]) + "\n")
    write(folder / "genbase.xml", XML)
    return folder


def test_user_mulan_dataset_by_name_and_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = genbase_pair(tmp_path / "data" / "mulan" / "genbase")
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        ds = load_dataset("genbase", data_dir=tmp_path / "data")
    assert ds.name == "genbase" and ds.label_names == ["PDOC1", "PDOC2"]
    # protein: an ID (all 24 rows differ) -> dropped; note: string -> dropped; motif: NO=0, YES=1
    # whatever the declaration order; shape: one-hot.
    assert ds.feature_names == ["motif", "size", "shape=round", "shape=flat", "shape=long"]
    np.testing.assert_array_equal(ds.train.X[:3], [[1, 1.5, 1, 0, 0], [0, 2.5, 0, 1, 0], [1, 3.5, 0, 0, 1]])
    assert isinstance(ds.train.X, np.ndarray) and isinstance(ds.test.X, np.ndarray)
    assert ds.train.Y.toarray()[:3].tolist() == [[True, False], [False, True], [True, True]]
    notes = ds.metadata["notes"]
    assert any("'protein'" in n and "ID" in n for n in notes) and any("'note'" in n for n in notes)
    assert any("'shape'" in n and "one-hot" in n for n in notes)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "'protein'" in logged and "'note'" in logged
    by_path = load_dataset(folder)
    assert by_path.feature_names == ds.feature_names and (by_path.test.Y != ds.test.Y).nnz == 0


@pytest.mark.parametrize("kind", ["meka", "xc"])
def test_user_meka_and_xc_datasets_by_name(tmp_path: Path, kind: str) -> None:
    if kind == "meka":
        header = "@relation 'mine: -C 2'\n" + "".join(f"@attribute {n} numeric\n" for n in "abcd")
        write(tmp_path / "meka" / "mine" / "mine-train.arff", header + "@data\n1,0,0.5,2\n")
        write(tmp_path / "meka" / "mine" / "mine-test.arff", header + "@data\n0,1,1,1\n")
    else:
        write(tmp_path / "xc" / "mine" / "train.txt", "1 2 2\n0 1:0.5\n")
        write(tmp_path / "xc" / "mine" / "test.txt", "1 2 2\n1 0:1\n")
    ds = load_dataset("mine", data_dir=tmp_path)
    assert ds.train.Y.toarray().tolist() == [[True, False]] and ds.test.Y.toarray().tolist() == [[False, True]]


def test_unknown_user_name_lists_places(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset 'genbase'") as info:
        load_dataset("genbase", data_dir=tmp_path)
    assert str(tmp_path / "mulan" / "genbase") in str(info.value)


def test_single_arff_gets_a_seeded_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "data" / "mulan" / "genbase"
    write(folder / "genbase.arff", HEADER + "\n".join(ROWS) + "\n")
    write(folder / "genbase.xml", XML)
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        ds = load_dataset("genbase", data_dir=tmp_path / "data")
    assert (len(ds.train), len(ds.test)) == (18, 6)
    assert ds.metadata["split"] == {"source": "genbase.arff", "test_fraction": 0.25, "split_seed": 0}
    assert any("seeded" in r.getMessage() and "18 train / 6 test" in r.getMessage() for r in caplog.records)
    sizes = [r[1] for r in ds.train.X.tolist() + ds.test.X.tolist()]  # the `size` column
    assert sorted(sizes) == [i + 1.5 for i in range(N_ROWS)]  # a partition of the rows
    again = load_dataset(folder / "genbase.arff")  # the file path: same split, same seed
    np.testing.assert_array_equal(again.test.X, ds.test.X)
    other = load_dataset("genbase", data_dir=tmp_path / "data", split_seed=1, test_fraction=0.5)
    assert len(other.test) == 12 and other.metadata["split"]["split_seed"] == 1
    assert len(list((tmp_path / "cache").iterdir())) == 2  # split options are part of the cache key


def test_single_text_file_gets_a_seeded_split(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.txt", "4 3 2\n0 0:1\n1 1:1\n0,1 2:1\n 0:2\n")
    ds = load_dataset(path, test_fraction=0.5, split_seed=3)
    assert (len(ds.train), len(ds.test)) == (2, 2) and sp.issparse(ds.train.X)
    X = sp.vstack([ds.train.X, ds.test.X]).toarray()
    assert sorted(map(tuple, X.tolist())) == [(0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 0, 0)]


def test_two_valued_nominals_and_sparse_defaults(tmp_path: Path) -> None:
    header = (
        "@relation 'n: -C -1'\n@attribute flag {t,f}\n@attribute colour {red,green}\n"
        "@attribute grade {A,B,C}\n@attribute y {1,0}\n@data\n"
    )
    write(tmp_path / "n-train.arff", header + "{0 f,1 green,2 C}\n{3 1}\n")
    write(tmp_path / "n-test.arff", header + "t,red,B,0\n")
    ds = load_dataset(tmp_path)
    # flag: f=0, t=1 (a yes/no pair); colour: declaration order red=0, green=1; y {1,0}: "1" is 1.
    # Omitted sparse entries are the first declared value (Weka): flag t, grade A, y "1".
    assert sp.issparse(ds.train.X) and sp.issparse(ds.test.X)  # one type for both splits
    np.testing.assert_array_equal(ds.train.X.toarray(), [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]])
    np.testing.assert_array_equal(ds.test.X.toarray(), [[1, 0, 0, 1, 0]])
    assert ds.train.Y.toarray().ravel().tolist() == [True, True] and ds.test.Y.toarray().ravel().tolist() == [False]


def test_single_arff_whose_name_says_test(tmp_path: Path) -> None:
    write(tmp_path / "contest.arff", HEADER + "\n".join(ROWS) + "\n")
    write(tmp_path / "contest.xml", XML)
    ds = load_dataset(tmp_path)
    assert (len(ds.train), len(ds.test)) == (18, 6) and ds.metadata["split"]["source"] == "contest.arff"

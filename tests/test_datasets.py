"""Loaders: exact values on tiny hand-made files, README statistics on the real data, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.envs.data.loading import DATASET_NAMES, load_dataset
from labelchain.envs.data.reuters import modapte_90, parse_sgml

needs_data = pytest.mark.needs_data  # conftest skips it, with the reason, when the data is missing


@pytest.fixture(autouse=True, scope="module")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Default-cache loads of this module go to one tmp folder, never the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABELCHAIN_CACHE", str(tmp_path_factory.mktemp("labelchain-cache")))
        yield


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(Y: sp.csr_matrix) -> list[list[int]]:
    return [list(r) for r in sp.csr_matrix(Y).tolil().rows]


# Labels sit between features; one label name holds an escaped quote, as Delicious's does.
TOY_HEADER = """% a comment line
@relation toy
@attribute f0 numeric
@attribute 'TAG_m\\'usica' {0,1}
@attribute f1 real
% comment inside the header
@attribute L2 {0,1}
@attribute f2 integer
@attribute colour {red,green}
"""
TOY_XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels">
<label name="L2"></label>
<label name="TAG_m\\'usica"></label>
</labels>
"""


def test_mulan_dense_labels_in_the_middle(tmp_path: Path) -> None:
    write(tmp_path / "toy-train.arff", TOY_HEADER + "@data\n1.5,1,-2,0,3,green\n% c\n0,0,0.25,1,0,red\n")
    write(tmp_path / "toy-test.arff", TOY_HEADER + "@DATA\n2,1,1,1,1,red\n")
    write(tmp_path / "toy.xml", TOY_XML)
    ds = load_dataset(tmp_path, cache=False)
    assert ds.label_names == ["L2", "TAG_m'usica"]  # XML order, escapes resolved
    assert ds.feature_names == ["f0", "f1", "f2", "colour"]
    assert isinstance(ds.train.X, np.ndarray) and ds.train.X.dtype == np.float32
    np.testing.assert_array_equal(ds.train.X, [[1.5, -2, 3, 1], [0, 0.25, 0, 0]])
    assert rows(ds.train.Y) == [[1], [0]]
    np.testing.assert_array_equal(ds.test.X, [[2, 1, 1, 0]])
    assert rows(ds.test.Y) == [[0, 1]]
    assert ds.train.Y.dtype == bool


def test_mulan_sparse_rows(tmp_path: Path) -> None:
    write(tmp_path / "toy-train-sparse.arff", TOY_HEADER + "@data\n{0 1.5,1 1,5 green}\n{}\n{3 1, 4 7}\n")
    write(tmp_path / "toy-test-sparse.arff", TOY_HEADER + "@data\n{2 0.5}\n")
    write(tmp_path / "toy.xml", TOY_XML)
    ds = load_dataset(tmp_path, cache=False)
    assert sp.issparse(ds.train.X) and ds.train.X.dtype == np.float32
    np.testing.assert_array_equal(ds.train.X.toarray(), [[1.5, 0, 0, 1], [0, 0, 0, 0], [0, 0, 7, 0]])
    assert rows(ds.train.Y) == [[1], [], [0]]
    np.testing.assert_array_equal(ds.test.X.toarray(), [[0, 0.5, 0, 0]])
    assert rows(ds.test.Y) == [[]]


@pytest.mark.parametrize(
    "option, labels, features", [("-C 2", ["a", "b"], ["c", "d"]), ("-C -2", ["c", "d"], ["a", "b"])]
)
def test_meka_label_option(tmp_path: Path, option: str, labels: list[str], features: list[str]) -> None:
    header = f"@relation 'toy: {option} -W 0'\n" + "".join(f"@attribute {n} {{0,1}}\n" for n in "abcd")
    write(tmp_path / "m-train.arff", header + "@data\n1,0,0,1\n0,1,1,1\n")
    write(tmp_path / "m-test.arff", header + "@data\n{0 1,2 1}\n")
    ds = load_dataset(tmp_path, cache=False)
    assert ds.label_names == labels and ds.feature_names == features
    if option == "-C 2":
        assert rows(ds.train.Y) == [[0], [1]] and rows(ds.test.Y) == [[0]]
        np.testing.assert_array_equal(ds.train.X.toarray() if sp.issparse(ds.train.X) else ds.train.X, [[0, 1], [1, 1]])
    else:
        assert rows(ds.train.Y) == [[1], [0, 1]] and rows(ds.test.Y) == [[0]]
        np.testing.assert_array_equal(ds.test.X.toarray(), [[1, 0]])


def test_xc_format(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "3 5 4\n0,3 0:1.5 4:2\n 2:1\n2 1:0.5\n")
    write(tmp_path / "test.txt", "1 5 4\n1,2 3:1\n")
    ds = load_dataset(tmp_path, cache=False)
    assert ds.label_names == ["0", "1", "2", "3"] and ds.n_features == 5
    np.testing.assert_array_equal(ds.train.X.toarray(), [[1.5, 0, 0, 0, 2], [0, 0, 1, 0, 0], [0, 0.5, 0, 0, 0]])
    assert rows(ds.train.Y) == [[0, 3], [], [2]]
    assert rows(ds.test.Y) == [[1, 2]]


def test_libsvm_format(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "7,3 1:0.5 3:2\n3 2:1\n")
    write(tmp_path / "test.txt", "10 4:1\n1:1\n")  # second test doc has no labels
    ds = load_dataset(tmp_path, cache=False)
    assert ds.label_names == ["3", "7", "10"] and ds.n_features == 4
    np.testing.assert_array_equal(ds.train.X.toarray(), [[0.5, 0, 2, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(ds.test.X.toarray(), [[0, 0, 0, 1], [1, 0, 0, 0]])
    assert rows(ds.train.Y) == [[0, 1], [0]] and rows(ds.test.Y) == [[2], []]


SGML = """<!DOCTYPE lewis SYSTEM "lewis.dtd">
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="1">
<TOPICS><D>grain</D><D>wheat</D></TOPICS>
<TEXT>&#2;
<TITLE>WHEAT &amp; GRAIN</TITLE>
<DATELINE>CHICAGO - </DATELINE><BODY>Prices &lt;rose&gt;.
 Reuter
&#3;</BODY></TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="2" NEWID="2">
<TOPICS><D>rare</D></TOPICS>
<TEXT TYPE="BRIEF">&#2;
<TITLE>RARE ONLY IN TRAIN</TITLE>
&#3;</TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="PUBLISHED-TESTSET" OLDID="3" NEWID="3">
<TOPICS><D>wheat</D></TOPICS>
<TEXT TYPE="UNPROC">&#2;raw unprocessed text
&#3;</TEXT>
</REUTERS>
<REUTERS TOPICS="NO" LEWISSPLIT="TEST" CGISPLIT="PUBLISHED-TESTSET" OLDID="4" NEWID="4">
<TOPICS><D>grain</D></TOPICS><TEXT><TITLE>NOT A TOPICS DOC</TITLE></TEXT>
</REUTERS>
<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="PUBLISHED-TESTSET" OLDID="5" NEWID="5">
<TOPICS></TOPICS><TEXT><TITLE>NO TOPIC</TITLE></TEXT>
</REUTERS>
"""


def test_reuters_sgml_and_modapte_rules(tmp_path: Path) -> None:
    docs = parse_sgml(write(tmp_path / "reut2-000.sgm", SGML))
    assert [d.newid for d in docs] == [1, 2, 3, 4, 5]
    assert docs[0].text == "WHEAT & GRAIN\nPrices <rose>.\n Reuter"
    assert docs[1].text == "RARE ONLY IN TRAIN" and docs[2].text == "raw unprocessed text"
    train, test, topics = modapte_90(docs)
    # 'rare' has no test doc, 'grain' none either (doc 4 is TOPICS="NO"): only 'wheat' survives,
    # and doc 2 goes because it has none of the kept topics.
    assert topics == ["wheat"]
    assert [d.newid for d in train] == [1] and [d.newid for d in test] == [3]


@pytest.mark.slow
def test_reuters_folder_fits_tfidf_on_train_only(tmp_path: Path) -> None:
    extra = SGML.replace("Prices", "Futures prices")
    for n in range(1, 6):  # other documents: each NEWID once in the folder
        extra = extra.replace(f'NEWID="{n}"', f'NEWID="{n + 5}"')
    write(tmp_path / "reut2-000.sgm", SGML)
    write(tmp_path / "reut2-001.sgm", extra.replace('<!DOCTYPE lewis SYSTEM "lewis.dtd">\n', ""))
    ds = load_dataset(tmp_path, cache=False)
    assert ds.label_names == ["wheat"] and len(ds.train) == 2 and len(ds.test) == 2
    # min_df=2 over the two training docs: words of the test docs alone ("raw", "unprocessed") are absent.
    assert "raw" not in ds.feature_names and {"wheat", "grain", "prices"} <= set(ds.feature_names)
    assert sp.issparse(ds.train.X) and ds.train.X.dtype == np.float32


def test_cache_roundtrip_and_invalidation(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    write(folder / "train.txt", "2 3 2\n0 0:1\n1 2:2\n")
    write(folder / "test.txt", "1 3 2\n0,1 1:1\n")
    cache_dir = tmp_path / "cache"
    first = load_dataset(folder, cache_dir=cache_dir)
    entries = list(cache_dir.iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    assert not list(entries[0].glob("*.tmp"))
    cached = load_dataset(folder, cache_dir=cache_dir)
    assert (cached.train.X != first.train.X).nnz == 0 and cached.label_names == first.label_names
    write(folder / "test.txt", "1 3 2\n1 1:5\n")  # changed size => new key, fresh parse
    changed = load_dataset(folder, cache_dir=cache_dir)
    assert rows(changed.test.Y) == [[1]] and changed.test.X[0, 1] == 5
    assert len(list(cache_dir.iterdir())) == 2


README_TABLE = {  # name: (train, test, labels, labels per doc over train+test)
    "emotions": (391, 202, 6, 1.87),
    "scene": (1211, 1196, 6, 1.07),
    "yeast": (1500, 917, 14, 4.24),
    "medical": (333, 645, 45, 1.25),
    "enron": (1123, 579, 53, 3.38),
    # 7,770 not 7,769: see envs/data/reuters.py (the README's rules applied to the SGML give 7,770).
    "reuters21578": (7770, 3019, 90, 1.24),
    "bibtex": (4880, 2515, 159, 2.40),
    "corel5k": (4500, 500, 374, 3.52),
    "delicious": (12920, 3185, 983, 19.02),
}
DENSE = {"emotions", "scene", "yeast"}


@needs_data
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "reuters21578" else n for n in DATASET_NAMES]
)  # reuters21578: parsing its SGML takes seconds
def test_named_dataset_matches_readme(name: str) -> None:
    ds = load_dataset(name)
    train, test, labels, per_doc = README_TABLE[name]
    stats = ds.stats()
    assert (stats["train"], stats["test"], stats["labels"]) == (train, test, labels)
    assert round(stats["labels_per_doc"], 2) == per_doc
    assert sp.issparse(ds.train.X) == (name not in DENSE)
    assert ds.train.X.dtype == np.float32 and ds.train.Y.dtype == bool
    assert len(ds.feature_names) == ds.n_features and len(set(ds.label_names)) == ds.n_labels


@needs_data
@pytest.mark.slow
def test_delicious_cache_is_identical(tmp_path: Path) -> None:
    fresh = load_dataset("delicious", cache=False)
    load_dataset("delicious", cache_dir=tmp_path)
    cached = load_dataset("delicious", cache_dir=tmp_path)  # timings: experiments/bench/bench_data.py
    for a, b in ((fresh.train, cached.train), (fresh.test, cached.test)):
        assert (a.X != b.X).nnz == 0 and (a.Y != b.Y).nnz == 0 and a.X.dtype == b.X.dtype
    assert cached.label_names == fresh.label_names and "TAG_m'usica" in cached.label_names


@needs_data
@pytest.mark.slow
def test_reuters_cached_load_is_identical() -> None:
    first = load_dataset("reuters21578")  # default cache; built once by the statistics test
    again = load_dataset("reuters21578")
    assert (first.train.X != again.train.X).nnz == 0 and first.feature_names == again.feature_names


@needs_data
def test_delicious_clprnn_split(data_dir: Path) -> None:
    base = load_dataset("delicious")
    ds = load_dataset("delicious", split_index=0)
    assert (len(ds.train), len(ds.test)) == (12920, 3185)
    first_row = int((data_dir / "mulan/delicious/clprnn-splits/delicious_trSplit.txt").read_text().split()[0])
    union_Y = sp.vstack([base.train.Y, base.test.Y], format="csr")
    assert (ds.train.Y[0] != union_Y[first_row - 1]).nnz == 0  # 1-based row numbers
    assert ds.train.Y.sum() + ds.test.Y.sum() == union_Y.sum()

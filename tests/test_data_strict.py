"""Loaders, second hardening round (issue 19): memory whatever the token lengths, strict numbers,
duplicates (Reuters NEWIDs, split rows, repeated label ids), cache entries bound to their key, and a
note for label-like attributes a MULAN XML leaves out."""

from __future__ import annotations

import logging
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from labelchain.envs.data.arff import read_arff
from labelchain.envs.data.errors import DataFormatError
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.data.textformats import read_libsvm_pair, read_xc

HEADER = "@relation r\n" + "".join(f"@attribute a{j} numeric\n" for j in range(8)) + "@attribute y {0,1}\n@data\n"
ROWS = "".join(",".join(f"{(i * 8 + j) % 7}.25" for j in range(8)) + f",{i % 2}\n" for i in range(60))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def mulan(folder: Path, train: str, test: str, labels: list[str]) -> Path:
    write(folder / "toy-train.arff", train)
    write(folder / "toy-test.arff", test)
    body = "".join(f'<label name="{n}"></label>' for n in labels)
    write(
        folder / "toy.xml", f'<?xml version="1.0"?><labels xmlns="http://mulan.sourceforge.net/labels">{body}</labels>'
    )
    return folder


def traced_peak(load) -> tuple[object, int]:
    """(result, peak bytes) of `load()`; tracemalloc sees numpy's buffers too."""
    tracemalloc.start()
    try:
        result = load()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------- memory
def test_one_long_arff_value_costs_its_length_not_the_file_times_it(tmp_path: Path) -> None:
    long_value = "0." + "3" * 100_000
    path = write(tmp_path / "long.arff", HEADER + long_value + ROWS[ROWS.index(",") :])
    size = path.stat().st_size
    table, peak = traced_peak(lambda: read_arff(path))
    assert table.matrix[0, 0] == np.float32(1 / 3)  # read correctly, not refused
    assert table.matrix.shape == (60, 9)
    # The fixed-width Unicode array of the old reader: 540 tokens x 100,002 characters x 4 bytes = 216 MB.
    assert peak < 10 * size, f"peak {peak / 2**20:.1f} MB for a {size / 2**10:.0f} KB file"


def test_long_xc_tokens_cost_their_length(tmp_path: Path) -> None:
    lines = [f"{i % 3} 0:{i}.5 1:{i % 4}" for i in range(200)]
    lines[7] = "0" * 50_000 + "2 1:0." + "5" * 50_000  # label 2, feature 1 = 0.555...
    path = write(tmp_path / "long.txt", "200 2 3\n" + "\n".join(lines) + "\n")
    (X, Y), peak = traced_peak(lambda: read_xc(path))
    assert Y[7].indices.tolist() == [2] and X[7].toarray().tolist() == [[0.0, np.float32(5 / 9)]]
    assert peak < 10 * path.stat().st_size, f"peak {peak / 2**20:.1f} MB"


def test_a_long_integer_beyond_int64_is_refused_by_line(tmp_path: Path) -> None:
    path = write(tmp_path / "long.txt", "2 2 3\n0 1:1\n1" + "0" * 5000 + " 1:1\n")
    with pytest.raises(
        DataFormatError, match=r"label id '10+'\.\.\. \(5,001 characters\) is not an integer in the int64"
    ):
        read_xc(path)


# ---------------------------------------------------------------------------------- strict numbers
@pytest.mark.parametrize("token", ["1_000", "\u0661\u0662", "\uff11", "1\u00a0", "0x10", "1.0d", "1e", "--1", "١.٥"])
def test_arff_numbers_follow_the_arff_grammar(tmp_path: Path, token: str) -> None:
    rows = ROWS.splitlines()
    rows[3] = rows[3].replace("0.25", token, 1) if "0.25" in rows[3] else token + rows[3][rows[3].index(",") :]
    path = write(tmp_path / "x.arff", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match="is not a number; expected a numeric value") as info:
        read_arff(path)
    assert info.value.line == HEADER.count("\n") + 4 and info.value.field is not None


@pytest.mark.parametrize("token", ["+1", "-0.5", ".5", "5.", "1E+3", " 2 ", "7e-2"])
def test_arff_grammar_still_reads_every_plain_form(tmp_path: Path, token: str) -> None:
    path = write(tmp_path / "x.arff", HEADER + token + ROWS[ROWS.index(",") :])
    assert read_arff(path).matrix[0, 0] == np.float32(float(token))


@pytest.mark.parametrize(
    "line, what",
    [
        ("0 1_0:1", "feature id '1_0' is not an integer"),
        ("0 1:1_0", "feature value '1_0' is not a number"),
        ("\u0661 1:1", "label id '\u0661' is not an integer"),
        ("0 1:\u0663", "feature value '\u0663' is not a number"),
        ("0 \uff11:1", "feature id '\uff11' is not an integer"),
    ],
)
def test_text_numbers_are_ascii_and_without_underscores(tmp_path: Path, line: str, what: str) -> None:
    xc = write(tmp_path / "x.txt", f"2 3 3\n1 0:1\n{line}\n")
    with pytest.raises(DataFormatError, match=what) as info:
        read_xc(xc)
    assert info.value.line == 3


def test_sparse_arff_index_with_an_underscore(tmp_path: Path) -> None:
    path = write(tmp_path / "x.arff", HEADER + "{0 1, 8 1}\n{1_0 2}\n")
    with pytest.raises(DataFormatError, match="sparse index '1_0' is not an integer") as info:
        read_arff(path)
    assert info.value.line == HEADER.count("\n") + 2


# ---------------------------------------------------------------------------------- repeated label ids
@pytest.mark.parametrize("labels", ["1,1", "0,2,0"])
def test_xc_and_libsvm_refuse_a_repeated_label_id(tmp_path: Path, labels: str) -> None:
    xc = write(tmp_path / "x.txt", f"2 2 3\n1 0:1\n{labels} 1:2\n")
    with pytest.raises(DataFormatError, match="label id [01] appears twice in the row") as info:
        read_xc(xc)
    assert info.value.line == 3
    train = write(tmp_path / "train.svm", f"1 1:1\n{labels} 2:2\n")
    test = write(tmp_path / "test.svm", "2 1:1\n")
    with pytest.raises(DataFormatError, match="label id [01] appears twice") as info:
        read_libsvm_pair(train, test)
    assert info.value.line == 2 and info.value.path == str(train)


# ---------------------------------------------------------------------------------- Reuters
REUTERS = (
    '<REUTERS TOPICS="YES" LEWISSPLIT="{split}" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="{n}">\n'
    "<TOPICS><D>grain</D></TOPICS><TEXT><TITLE>WHEAT {n}</TITLE><BODY>wheat crop {n}</BODY></TEXT>\n</REUTERS>\n"
)


def test_reuters_duplicate_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "reut2-000.sgm", REUTERS.format(split="TRAIN", n=1) + REUTERS.format(split="TEST", n=2))
    shutil.copy(tmp_path / "reut2-000.sgm", tmp_path / "reut2-000 (1).sgm")
    with pytest.raises(DataFormatError, match=r"NEWID=1 was already read from reut2-000 \(1\).sgm, line 1") as info:
        load_dataset(tmp_path, cache=False)
    assert info.value.path == str(tmp_path / "reut2-000.sgm") and info.value.line == 1


def test_reuters_newid_twice_in_one_file(tmp_path: Path) -> None:
    write(
        tmp_path / "reut2-000.sgm",
        REUTERS.format(split="TRAIN", n=1) + REUTERS.format(split="TEST", n=2) + REUTERS.format(split="TEST", n=1),
    )
    with pytest.raises(DataFormatError, match="NEWID=1 was already read from reut2-000.sgm, line 1") as info:
        load_dataset(tmp_path, cache=False)
    assert info.value.line == 7


# ---------------------------------------------------------------------------------- split files
def split_folder(tmp_path: Path, train_rows: list[int], test_rows: list[int]) -> Path:
    header = "@relation r\n@attribute a numeric\n@attribute y {0,1}\n@data\n"
    folder = mulan(tmp_path / "toy", header + "1,0\n2,1\n3,0\n4,1\n", header + "5,1\n6,0\n", ["y"])
    write(folder / "clprnn-splits" / "toy_trSplit.txt", "".join(f"{r}\n" for r in train_rows))
    write(folder / "clprnn-splits" / "toy_tstSplit.txt", "".join(f"{r}\n" for r in test_rows))
    return folder


def test_split_listing_a_row_twice_is_refused(tmp_path: Path) -> None:
    folder = split_folder(tmp_path, [1, 2, 3, 2], [5, 6])  # row 4 in neither split, row 2 twice
    with pytest.raises(DataFormatError, match="row 2 is listed twice .*entry 4") as info:
        load_dataset(folder, cache=False, split_index=0)
    assert info.value.path.endswith("toy_trSplit.txt") and info.value.field == "column 0"


def test_a_true_partition_still_resplits(tmp_path: Path) -> None:
    ds = load_dataset(split_folder(tmp_path, [6, 1, 3, 4], [2, 5]), cache=False, split_index=0)
    assert ds.train.X[:, 0].tolist() == [6, 1, 3, 4] and ds.test.X[:, 0].tolist() == [2, 5]


# ---------------------------------------------------------------------------------- cache binding
def toy_text(folder: Path, labels: str) -> Path:
    write(folder / "train.txt", f"3 4 3\n{labels} 0:1.5 3:2\n1 1:1\n2 2:0.5\n")
    write(folder / "test.txt", "1 4 3\n0 0:1\n")
    return folder


def test_cache_entry_copied_into_another_entry_is_not_returned(tmp_path: Path, caplog) -> None:
    cache = tmp_path / "cache"
    a, b = toy_text(tmp_path / "a", "0,2"), toy_text(tmp_path / "b", "1")
    load_dataset(a, cache_dir=cache)
    entry_a = next(cache.iterdir())
    clean_b = load_dataset(b, cache_dir=cache)
    entry_b = next(p for p in cache.iterdir() if p != entry_a)
    for path in entry_a.iterdir():  # every file of a's entry over b's: each checksum still passes
        shutil.copy(path, entry_b / path.name)
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        again = load_dataset(b, cache_dir=cache)
    assert again.train.Y.toarray().tolist() == clean_b.train.Y.toarray().tolist()
    assert again.train.Y[0].indices.tolist() == [1]
    (record,) = caplog.records
    assert str(entry_b) in record.getMessage() and f"holds the entry of '{entry_a.name}'" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        load_dataset(b, cache_dir=cache)  # rebuilt: sound again, no warning
    assert not caplog.records


# ---------------------------------------------------------------------------------- MULAN notes
def test_label_like_attribute_left_out_of_the_xml_gets_a_note(tmp_path: Path, caplog) -> None:
    header = (
        "@relation r\n@attribute f1 numeric\n@attribute f2 numeric\n@attribute f3 numeric\n"
        "@attribute y1 {0,1}\n@attribute y2 {0,1}\n@attribute y3 numeric\n@data\n"
    )
    rows = "0.5,1,2,1,0,1\n1.5,3,4,0,1,0\n"
    with caplog.at_level(logging.WARNING, logger="labelchain.envs.data"):
        ds = load_dataset(mulan(tmp_path / "left", header + rows, header + rows, ["y1", "y2"]), cache=False)
    assert ds.feature_names == ["f1", "f2", "f3", "y3"]  # legal in MULAN: a feature
    (note,) = ds.metadata["notes"]
    assert "1 attribute(s) not named in toy.xml look like labels" in note and "'y3' (after the labels)" in note
    assert any(note in r.getMessage() for r in caplog.records)
    inside = load_dataset(mulan(tmp_path / "gap", header + rows, header + rows, ["y1", "y3"]), cache=False)
    assert "'y2' (between the labels)" in inside.metadata["notes"][0]
    complete = load_dataset(mulan(tmp_path / "all", header + rows, header + rows, ["y1", "y2", "y3"]), cache=False)
    assert complete.metadata["notes"] == []


def test_features_that_merely_look_binary_get_no_note(tmp_path: Path) -> None:
    """Bibtex-like: binary features before the labels are features, not forgotten labels."""
    header = "@relation r\n" + "".join(f"@attribute w{j} {{0,1}}\n" for j in range(4))
    header += "@attribute y1 {0,1}\n@attribute y2 {0,1}\n@attribute z numeric\n@data\n"
    rows = "0,1,1,0,1,0,0.5\n1,0,0,1,0,1,2.5\n"  # z, after the labels, is not 0/1: no note
    ds = load_dataset(mulan(tmp_path / "b", header + rows, header + rows, ["y1", "y2"]), cache=False)
    assert ds.metadata["notes"] == []


@pytest.mark.parametrize("header", ["1 100000000 1", "1 1 100000000"])
def test_a_tiny_xc_file_cannot_declare_gigabytes_of_columns(tmp_path: Path, header: str) -> None:
    path = tmp_path / "huge.txt"
    path.write_text(f"{header}\n0 0:1\n")
    tracemalloc.start()
    with pytest.raises(DataFormatError, match=r"header declares n_\w+ 100,000,000 is above the largest") as info:
        read_xc(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.line == 1 and peak < 10_000_000


def test_a_libsvm_feature_id_beyond_the_cap_is_refused_by_line(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1:1\n1 100000000000:1\n")
    (tmp_path / "test.txt").write_text("0 1:1\n")
    with pytest.raises(
        DataFormatError, match=r"feature id \(LIBSVM ids are 1-based\) 100000000000 out of range"
    ) as info:
        read_libsvm_pair(tmp_path / "train.txt", tmp_path / "test.txt")
    assert info.value.line == 2

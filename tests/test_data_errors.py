"""Bad input must raise DataFormatError naming the file, the line (or field) and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelchain.envs.data.arff import read_arff
from labelchain.envs.data.multilabel import read_mulan_xml
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.data.loading import dataset_folder, load_dataset
from labelchain.envs.data.textformats import read_libsvm_pair, read_xc

HEADER = "@relation r\n@attribute a numeric\n@attribute b numeric\n@attribute y {0,1}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def mulan_folder(tmp_path: Path, train: str, test: str, labels: list[str]) -> Path:
    write(tmp_path / "toy-train.arff", train)
    write(tmp_path / "toy-test.arff", test)
    body = "".join(f'<label name="{n}"></label>' for n in labels)
    write(
        tmp_path / "toy.xml",
        f'<?xml version="1.0"?><labels xmlns="http://mulan.sourceforge.net/labels">{body}</labels>',
    )
    return tmp_path


def test_dense_row_cut_short_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.arff", HEADER + "@data\n1,2,0\n3,4\n")
    with pytest.raises(DataFormatError) as info:
        read_arff(path)
    assert info.value.line == 7 and str(path) in str(info.value)
    assert "expected 3" in str(info.value)


def test_missing_data_section(tmp_path: Path) -> None:
    path = write(tmp_path / "nodata.arff", HEADER)
    with pytest.raises(DataFormatError, match="no @data section") as info:
        read_arff(path)
    assert str(path) in str(info.value)


def test_sparse_row_without_closing_brace(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.arff", HEADER + "@data\n{0 1,2 1}\n{1 5,2\n")
    with pytest.raises(DataFormatError, match="must end with '}'") as info:
        read_arff(path)
    assert info.value.line == 7


def test_unknown_attribute_type(tmp_path: Path) -> None:
    path = write(tmp_path / "type.arff", "@relation r\n@attribute a numeric\n@attribute b complex\n@data\n1,2\n")
    with pytest.raises(DataFormatError, match="unknown attribute type 'complex'") as info:
        read_arff(path)
    assert info.value.line == 3 and "'b'" in str(info.value)


def test_date_attribute_is_rejected_clearly(tmp_path: Path) -> None:
    path = write(tmp_path / "date.arff", "@relation r\n@attribute a date\n@data\nx\n")
    with pytest.raises(DataFormatError, match="type 'date'"):
        read_arff(path)


def test_xml_label_missing_from_arff(tmp_path: Path) -> None:
    data = HEADER + "@data\n1,2,1\n"
    folder = mulan_folder(tmp_path, data, data, ["y", "z"])
    with pytest.raises(DataFormatError, match="'z'") as info:
        load_dataset(folder, cache=False)
    assert "toy.xml" in str(info.value) and "toy-train.arff" in str(info.value)


def test_sparse_index_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "idx.arff", HEADER + "@data\n{0 1}\n{1 2,3 1}\n")
    with pytest.raises(DataFormatError, match=r"sparse index 3 out of range.*0\.\.2") as info:
        read_arff(path)
    assert info.value.line == 7


def test_nominal_value_not_declared(tmp_path: Path) -> None:
    path = write(tmp_path / "nom.arff", HEADER + "@data\n1,2,2\n")
    with pytest.raises(DataFormatError, match="not one of the declared values") as info:
        read_arff(path)
    assert info.value.field == "attribute 'y'" and info.value.line == 6


def test_missing_value_and_bad_number(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"missing value '\?'") as info:
        read_arff(write(tmp_path / "q.arff", HEADER + "@data\n1,2,0\n?,2,0\n"))
    assert info.value.line == 7 and info.value.field == "attribute 'a'"
    with pytest.raises(DataFormatError, match="'x1' is not a number"):
        read_arff(write(tmp_path / "x.arff", HEADER + "@data\n1,x1,0\n"))


@pytest.mark.parametrize("reader", [read_arff, read_mulan_xml, read_xc])
def test_empty_file(tmp_path: Path, reader) -> None:
    path = write(tmp_path / "empty.dat", "")
    with pytest.raises(DataFormatError, match="empty") as info:
        reader(path)
    assert str(path) in str(info.value)


def test_empty_libsvm_file(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "1 1:1\n")
    test = write(tmp_path / "test.txt", "\n")
    with pytest.raises(DataFormatError, match="empty") as info:
        read_libsvm_pair(train, test)
    assert "test.txt" in str(info.value)


def test_xc_header_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="header says 3 documents but the file has 2") as info:
        read_xc(write(tmp_path / "rows.txt", "3 4 2\n0 1:1\n1 0:1\n"))
    assert info.value.line == 1
    with pytest.raises(DataFormatError, match=r"feature id 4 out of range; expected 0\.\.3") as info:
        read_xc(write(tmp_path / "feat.txt", "2 4 2\n0 1:1\n1 4:1\n"))
    assert info.value.line == 3
    with pytest.raises(DataFormatError, match=r"label id 2 out of range") as info:
        read_xc(write(tmp_path / "lab.txt", "1 4 2\n0,2 1:1\n"))
    assert info.value.line == 2
    with pytest.raises(DataFormatError, match="is not 'n_docs n_features n_labels'"):
        read_xc(write(tmp_path / "hdr.txt", "3 4\n0 1:1\n"))


def test_libsvm_zero_feature_id(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", "1 1:1\n2 0:1\n")
    with pytest.raises(DataFormatError, match="1-based") as info:
        read_libsvm_pair(train, train)
    assert info.value.line == 2


def test_malformed_xml(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.xml", '<labels>\n<label name="a">\n</labels>')
    with pytest.raises(DataFormatError, match="not well-formed") as info:
        read_mulan_xml(path)
    assert info.value.line == 3


def test_missing_dataset_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELCHAIN_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    (tmp_path / "arg").mkdir()
    import labelchain.envs.data.locate as loading

    monkeypatch.setattr(loading, "REPO_ROOT", tmp_path / "repo")
    with pytest.raises(DataNotFoundError) as info:
        dataset_folder("bibtex", tmp_path / "arg")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for place in (tmp_path / "arg", tmp_path / "env", tmp_path / "shared" / "data"):
        assert str(place / "mulan" / "bibtex") in message
    assert "mulan" in message.lower() and "Reuters-21578" in message


def test_unknown_name_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="dataset 'nope' .* not found"):
        dataset_folder("nope")
    with pytest.raises(DataNotFoundError, match="no dataset files found"):
        load_dataset(tmp_path, cache=False)


# --- silent wrong results that must now be errors ------------------------------------------------

LABELLED = "@relation r\n@attribute a numeric\n@attribute b numeric\n@attribute y numeric\n"


@pytest.mark.parametrize("token", ["nan", "NaN", "inf", "-Infinity", "1e39"])
def test_non_finite_arff_values(tmp_path: Path, token: str) -> None:
    dense = write(tmp_path / "dense.arff", HEADER + f"@data\n1,2,0\n3,{token},1\n")
    with pytest.raises(DataFormatError, match="not a finite number") as info:
        read_arff(dense)
    assert (info.value.line, info.value.field) == (7, "attribute 'b'") and "dense.arff" in str(info.value)
    sparse = write(tmp_path / "sparse.arff", HEADER + f"@data\n{{0 1}}\n{{0 {token},2 1}}\n")
    with pytest.raises(DataFormatError, match="not a finite number") as info:
        read_arff(sparse)
    assert (info.value.line, info.value.field) == (7, "attribute 'a'")


@pytest.mark.parametrize("token", ["nan", "inf", "-inf", "1e39"])
def test_non_finite_text_values(tmp_path: Path, token: str) -> None:
    with pytest.raises(DataFormatError, match="not a finite number") as info:
        read_xc(write(tmp_path / "xc.txt", f"2 3 2\n0 0:1\n1 0:1 2:{token}\n"))
    assert info.value.line == 3 and info.value.field == "feature 2"
    train = write(tmp_path / "train.txt", f"1 1:1\n2 3:{token}\n")
    with pytest.raises(DataFormatError, match="not a finite number") as info:
        read_libsvm_pair(train, write(tmp_path / "test.txt", "1 1:1\n"))
    assert info.value.line == 2 and "train.txt" in str(info.value)


def test_attribute_declared_twice(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.arff", HEADER + "@attribute a numeric\n@data\n1,2,0,1\n")
    with pytest.raises(DataFormatError, match="declared twice.*first on line 2") as info:
        read_arff(path)
    assert info.value.line == 5 and info.value.field == "attribute 'a'"


@pytest.mark.parametrize("value", ["-1", "2", "0.4"])
def test_numeric_label_must_be_0_or_1(tmp_path: Path, value: str) -> None:
    folder = mulan_folder(tmp_path, LABELLED + "@data\n1,2,1\n", LABELLED + f"@data\n1,2,0\n3,4,{value}\n", ["y"])
    with pytest.raises(DataFormatError, match="not 0 or 1") as info:
        load_dataset(folder, cache=False)
    assert info.value.line == 7 and info.value.field == "attribute 'y'" and "toy-test.arff" in str(info.value)


def test_nominal_label_with_a_third_value(tmp_path: Path) -> None:
    header = "@relation r\n@attribute a numeric\n@attribute y {0,1,2}\n"
    folder = mulan_folder(tmp_path, header + "@data\n1,1\n5,2\n", header + "@data\n1,0\n", ["y"])
    with pytest.raises(DataFormatError, match="label value '2' is not 0 or 1") as info:
        load_dataset(folder, cache=False)
    assert info.value.line == 6 and "toy-train.arff" in str(info.value)


def test_sparse_index_named_twice(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="names index 1 twice") as info:
        read_arff(write(tmp_path / "twice.arff", HEADER + "@data\n{0 1}\n{1 2,0 1,1 3}\n"))
    assert info.value.line == 7 and info.value.field == "attribute 'b'"
    with pytest.raises(DataFormatError, match="feature id 2 appears twice") as info:
        read_xc(write(tmp_path / "xc.txt", "2 3 2\n0 0:1\n1 2:1 0:1 2:5\n"))
    assert info.value.line == 3


@pytest.mark.parametrize(
    ("rows", "message", "line"),
    [
        ("{+1 5}\n{x 3}\n", "sparse index 'x' is not an integer$", 7),  # '+1' is a valid integer
        ("{0 1}\n{99999999999999999999 3}\n", "is not an integer in the int64 range", 7),
    ],
)
def test_bad_sparse_index_names_its_own_line(tmp_path: Path, rows: str, message: str, line: int) -> None:
    with pytest.raises(DataFormatError, match=message) as info:
        read_arff(write(tmp_path / "index.arff", HEADER + "@data\n" + rows))
    assert info.value.line == line


@pytest.mark.parametrize("variable", [None, "LABELCHAIN_DATA"])
def test_missing_data_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable) -> None:
    missing = tmp_path / "no-such-folder"
    if variable:
        monkeypatch.setenv(variable, str(missing))
    with pytest.raises(DataNotFoundError, match="does not exist") as info:
        load_dataset("emotions", data_dir=None if variable else missing, cache=False)
    assert str(missing) in str(info.value) and (variable or "--data-dir") in str(info.value)


@pytest.mark.parametrize("empty", ["train", "test"])
def test_empty_split_names_the_file(tmp_path: Path, empty: str) -> None:
    rows = {"train": LABELLED + "@data\n1,2,1\n", "test": LABELLED + "@data\n3,4,0\n"}
    rows[empty] = LABELLED + "@data\n% no rows\n"
    folder = mulan_folder(tmp_path, rows["train"], rows["test"], ["y"])
    with pytest.raises(DataFormatError, match="no data rows") as info:
        load_dataset(folder, cache=False)
    assert f"toy-{empty}.arff" in str(info.value)
    xc = tmp_path / "xc"
    xc.mkdir()
    write(xc / "train.txt", "1 3 2\n0 0:1\n")
    write(xc / "test.txt", "0 3 2\n")
    with pytest.raises(DataFormatError, match="no data rows") as info:
        load_dataset(xc, cache=False)
    assert "test.txt" in str(info.value)


def test_nul_byte_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nul.arff"
    path.write_bytes((HEADER + "@data\n1,2,0\n").encode() + b"10\x00,2,1\n")  # numpy would read 10\x00 as 10
    with pytest.raises(DataFormatError, match="NUL byte") as info:
        read_arff(path)
    assert info.value.line == 7


def test_xml_with_unknown_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "enc.xml", '<?xml version="1.0" encoding="u0f-8"?>\n<labels><label name="a"/></labels>')
    with pytest.raises(DataFormatError, match="unreadable XML.*u0f-8"):
        read_mulan_xml(path)


def test_reuters_without_test_documents(tmp_path: Path) -> None:
    doc = (
        '<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="1">\n'
        "<TOPICS><D>grain</D></TOPICS><TEXT><TITLE>WHEAT</TITLE></TEXT>\n</REUTERS>\n"
    )
    write(tmp_path / "reut2-000.sgm", doc)
    with pytest.raises(DataFormatError, match="0 test documents") as info:
        load_dataset(tmp_path, cache=False)
    assert str(tmp_path) in str(info.value)


def test_reuters_damaged_markup(tmp_path: Path) -> None:
    doc = (
        '<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="1" NEWID="{n}">\n'
        "<TOPICS><D>grain</D></TOPICS><TEXT><TITLE>WHEAT</TITLE></TEXT>\n</REUTERS>\n"
    )
    from labelchain.envs.data.reuters import parse_sgml

    merged = write(tmp_path / "merged.sgm", doc.format(n=1).replace("</REUTERS>", "</REUTERX>") + doc.format(n=2))
    with pytest.raises(DataFormatError, match="opened before the previous one was closed") as info:
        parse_sgml(merged)
    assert info.value.line == 4
    cut = write(tmp_path / "cut.sgm", doc.format(n=1) + doc.format(n=2)[:60])
    with pytest.raises(DataFormatError, match="outside a <REUTERS>") as info:
        parse_sgml(cut)
    assert info.value.line == 4
    moved = write(tmp_path / "moved.sgm", doc.format(n=1).replace('"TRAIN"', '"TRAIX"'))
    with pytest.raises(DataFormatError, match="LEWISSPLIT='TRAIX'") as info:
        parse_sgml(moved)
    assert info.value.line == 1


@pytest.mark.parametrize("cache", [False, True])
def test_a_dataset_file_that_is_a_directory_is_named(tmp_path: Path, cache: bool) -> None:
    """Issue 19 re-probe: a folder named like the train file ended in a raw IsADirectoryError."""
    (tmp_path / "toy").mkdir()
    folder = mulan_folder(tmp_path / "toy", HEADER + "@data\n1,2,0\n", HEADER + "@data\n3,4,1\n", ["y"])
    (folder / "toy-train.arff").unlink()
    (folder / "toy-train.arff").mkdir()
    with pytest.raises(DataFormatError, match="toy-train.arff: is a directory, expected a file") as info:
        load_dataset(folder, cache=cache, cache_dir=tmp_path / "cache")
    assert "\n" not in str(info.value)

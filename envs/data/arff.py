"""Weka ARFF reader (dense and sparse rows), as MULAN and MEKA ship their multi-label datasets.

Why our own reader: scipy's `loadarff` has no sparse rows, and liac-arff is slow on Delicious-sized
files. Here every value token of a file is converted in one numpy call, so the 3 MB Delicious
training file parses in well under a second; the slow per-token path runs only to locate an error.

Supported: `%` comments, `@relation`, `@attribute NAME TYPE` with TYPE numeric / real / integer /
nominal `{v1,v2,...}`, quoted names (`'a b'`, `"a"`) and backslash escapes (`TAG_m\\'usica`),
dense rows `v1,v2,...` and sparse rows `{index value, ...}` (omitted entries are 0, i.e. the first
nominal value). Nominal values are stored as their index in the declaration, as Weka does, so
`{0,1}` reads as 0/1. Not supported (clear error instead): string/date/relational attributes,
missing values `?`, instance weights.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from envs.data.errors import DataFormatError

_NUMERIC_TYPES = {"numeric", "real", "integer"}
_UNSUPPORTED_TYPES = {"string", "date", "relational"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(.)")


def unescape_name(text: str) -> str:
    """Resolve Weka/MULAN backslash escapes (`\\'` -> `'`) so XML and ARFF spellings compare equal."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


@dataclass
class ArffTable:
    """All attributes of one ARFF file as one float32 matrix (dense, or CSR if rows were sparse)."""

    path: Path
    relation: str
    attribute_names: list[str]
    nominal_values: list[list[str] | None]  # None for numeric attributes
    matrix: np.ndarray | sp.csr_matrix

    @property
    def n_rows(self) -> int:
        return self.matrix.shape[0]


def read_text(path: Path) -> str:
    """File text as UTF-8, falling back to latin-1 (some distributions are not valid UTF-8)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _split_name(text: str, path: Path, line_no: int) -> tuple[str, str]:
    """Split `NAME rest` where NAME may be quoted; returns (unescaped name, rest)."""
    text = text.strip()
    if not text:
        raise DataFormatError(path, "expected an attribute name after @attribute", line=line_no)
    if text[0] in "'\"":
        quote = text[0]
        i = 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == quote:
                return unescape_name(text[1:i]), text[i + 1 :]
            i += 1
        raise DataFormatError(path, f"unterminated quoted name {text!r}", line=line_no)
    match = re.match(r"([^\s{]+)(.*)", text, re.S)
    assert match is not None  # text is non-empty and stripped
    return unescape_name(match.group(1)), match.group(2)


def _strip_quotes(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return unescape_name(token[1:-1])
    return token


def _parse_type(text: str, name: str, path: Path, line_no: int) -> list[str] | None:
    """None for numeric types, the value list for nominal ones; DataFormatError for anything else."""
    text = text.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise DataFormatError(
                path, f"nominal type of attribute {name!r} must end with '}}'", line=line_no
            )
        values = [_strip_quotes(v) for v in text[1:-1].split(",")]
        if not values or any(v == "" for v in values):
            raise DataFormatError(path, f"empty value in nominal type of {name!r}", line=line_no)
        return values
    kind = text.split()[0].lower() if text else ""
    if kind in _NUMERIC_TYPES:
        return None
    expected = "expected numeric, real, integer or a nominal {v1,v2,...}"
    if kind in _UNSUPPORTED_TYPES:
        raise DataFormatError(
            path, f"attribute {name!r} has type {kind!r}, which labelchain does not read; {expected}",
            line=line_no,
        )
    raise DataFormatError(
        path, f"unknown attribute type {text!r} for attribute {name!r}; {expected}", line=line_no
    )


def read_arff(path: str | Path) -> ArffTable:
    """Parse one ARFF file; every format problem raises DataFormatError naming file and line."""
    path = Path(path)
    lines = read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise DataFormatError(path, "file is empty; expected an ARFF header (@relation, @attribute, @data)")
    relation = ""
    names: list[str] = []
    nominals: list[list[str] | None] = []
    data_start = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        keyword = line.split(None, 1)[0].lower()
        if keyword == "@relation":
            relation = _strip_quotes(line[len("@relation") :])
        elif keyword == "@attribute":
            name, rest = _split_name(line[len("@attribute") :], path, i + 1)
            nominals.append(_parse_type(rest, name, path, i + 1))
            names.append(name)
        elif keyword == "@data":
            data_start = i + 1
            break
        else:
            raise DataFormatError(
                path, f"unexpected header line {line[:60]!r}; expected @relation, @attribute or @data",
                line=i + 1,
            )
    if not names:
        raise DataFormatError(path, "no @attribute declarations before the data; expected an ARFF header")
    if data_start is None:
        raise DataFormatError(path, "no @data section: the file is truncated or not ARFF")
    matrix = _parse_data(lines, data_start, path, names, nominals)
    return ArffTable(path, relation, names, nominals, matrix)


def _parse_data(
    lines: list[str], start: int, path: Path, names: list[str], nominals: list[list[str] | None]
) -> np.ndarray | sp.csr_matrix:
    """Collect every row's tokens, then convert them all at once (fast path) and validate."""
    n_attr = len(names)
    dense_rows: list[str] = []
    dense_lines: list[int] = []
    sparse_idx: list[str] = []
    sparse_val: list[str] = []
    sparse_counts: list[int] = []
    sparse_lines: list[int] = []
    is_sparse_row: list[bool] = []
    for i in range(start, len(lines)):
        line = lines[i].strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("{"):
            if not line.endswith("}"):
                raise DataFormatError(
                    path, "sparse row must end with '}' (row cut short?)", line=i + 1
                )
            tokens = line[1:-1].replace(",", " ").split()
            if len(tokens) % 2:
                raise DataFormatError(
                    path, "sparse row must hold 'index value' pairs separated by commas", line=i + 1
                )
            sparse_idx.extend(tokens[0::2])
            sparse_val.extend(tokens[1::2])
            sparse_counts.append(len(tokens) // 2)
            sparse_lines.append(i + 1)
            is_sparse_row.append(True)
        else:
            n_values = line.count(",") + 1
            if n_values != n_attr:
                raise DataFormatError(
                    path,
                    f"dense row has {n_values} values, expected {n_attr} (one per @attribute); "
                    "row cut short or header mismatch?",
                    line=i + 1,
                )
            dense_rows.append(line)
            dense_lines.append(i + 1)
            is_sparse_row.append(False)

    dense = np.zeros((len(dense_rows), n_attr), dtype=np.float32)
    if dense_rows:
        tokens = ",".join(dense_rows).split(",")
        cols = np.tile(np.arange(n_attr), len(dense_rows))
        entry_lines = np.repeat(np.asarray(dense_lines), n_attr)
        dense = _convert(tokens, cols, entry_lines, path, names, nominals).reshape(-1, n_attr)
    if not sparse_counts:
        return dense

    entry_lines = np.repeat(np.asarray(sparse_lines), sparse_counts)
    cols = _parse_indices(sparse_idx, entry_lines, path, n_attr)
    vals = _convert(sparse_val, cols, entry_lines, path, names, nominals)
    n_sparse = len(sparse_counts)
    rows = np.repeat(np.arange(n_sparse), sparse_counts)
    sparse_part = sp.csr_matrix((vals, (rows, cols)), shape=(n_sparse, n_attr), dtype=np.float32)
    if dense_rows:  # a file may mix both row styles; keep the file's row order
        order = np.argsort(~np.asarray(is_sparse_row), kind="stable")  # positions of each part
        stacked = sp.vstack([sparse_part, sp.csr_matrix(dense)], format="csr")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return stacked[inverse]
    sparse_part.sum_duplicates()
    return sparse_part


def _parse_indices(tokens: list[str], entry_lines: np.ndarray, path: Path, n_attr: int) -> np.ndarray:
    try:
        cols = np.asarray(tokens).astype(np.int64) if tokens else np.zeros(0, dtype=np.int64)
    except ValueError:
        for token, line in zip(tokens, entry_lines):
            if not token.lstrip("-").isdigit():
                raise DataFormatError(
                    path, f"sparse index {token!r} is not an integer", line=int(line)
                ) from None
        raise
    bad = np.flatnonzero((cols < 0) | (cols >= n_attr))
    if bad.size:
        k = bad[0]
        raise DataFormatError(
            path,
            f"sparse index {cols[k]} out of range: the header declares {n_attr} attributes "
            f"(valid indices 0..{n_attr - 1})",
            line=int(entry_lines[k]),
        )
    return cols


def _convert(
    tokens: list[str],
    cols: np.ndarray,
    entry_lines: np.ndarray,
    path: Path,
    names: list[str],
    nominals: list[list[str] | None],
) -> np.ndarray:
    """Values of all tokens as float32; nominal tokens become their declaration index."""
    n_attr = len(names)
    is_nominal = np.array([v is not None for v in nominals], dtype=bool)
    # Nominal attributes declared as {0,1,...,k-1} can be read as numbers directly.
    identity = np.array(
        [v is not None and v == [str(j) for j in range(len(v))] for v in nominals], dtype=bool
    )
    n_values = np.array([len(v) if v is not None else 0 for v in nominals])
    needs_map = is_nominal & ~identity
    mapped = needs_map[cols] if n_attr else np.zeros(len(tokens), dtype=bool)
    values = np.zeros(len(tokens), dtype=np.float64)
    plain = np.flatnonzero(~mapped)
    plain_tokens = np.asarray(tokens)[plain] if len(tokens) else np.zeros(0, dtype=str)
    try:
        values[plain] = plain_tokens.astype(np.float64)
    except ValueError:
        _raise_bad_number(tokens, plain, cols, entry_lines, path, names)
    for k in np.flatnonzero(mapped):  # only attributes with non-numeric nominal values
        col = int(cols[k])
        lookup = nominals[col]
        assert lookup is not None
        token = _strip_quotes(tokens[k])
        if token not in lookup:
            raise DataFormatError(
                path, f"value {token!r} is not one of the declared values {lookup}",
                line=int(entry_lines[k]), field=f"attribute {names[col]!r}",
            )
        values[k] = lookup.index(token)
    check = np.flatnonzero(identity[cols]) if len(tokens) else plain
    if check.size:
        v = values[check]
        bad = np.flatnonzero((v != np.round(v)) | (v < 0) | (v >= n_values[cols[check]]))
        if bad.size:
            k = check[bad[0]]
            col = int(cols[k])
            raise DataFormatError(
                path, f"value {tokens[k]!r} is not one of the declared values {nominals[col]}",
                line=int(entry_lines[k]), field=f"attribute {names[col]!r}",
            )
    return values.astype(np.float32)


def _raise_bad_number(
    tokens: list[str], plain: np.ndarray, cols: np.ndarray, entry_lines: np.ndarray,
    path: Path, names: list[str],
) -> None:
    """Slow path, run only after the bulk conversion failed: find and report the first bad token."""
    for k in plain:
        token = tokens[k].strip()
        try:
            float(token)
        except ValueError:
            what = "missing value '?' is not supported" if token == "?" else f"value {token!r} is not a number"
            raise DataFormatError(
                path, f"{what}; expected a numeric value",
                line=int(entry_lines[k]), field=f"attribute {names[int(cols[k])]!r}",
            ) from None
    raise DataFormatError(path, "could not convert the data section to numbers")


# --- multi-label views: MULAN (labels named by an XML file) and MEKA (-C n in the relation) ---------


def read_mulan_xml(path: str | Path) -> list[str]:
    """Label names of a MULAN XML header, in document order (nested/hierarchical labels included)."""
    import xml.etree.ElementTree as ET

    path = Path(path)
    if not path.read_bytes().strip():
        raise DataFormatError(path, "file is empty; expected a MULAN <labels> XML header")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataFormatError(
            path, f"not well-formed XML ({err.msg if hasattr(err, 'msg') else err})",
            line=err.position[0],
        ) from None
    names = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "label":
            if "name" not in element.attrib:
                raise DataFormatError(path, "a <label> element has no name attribute")
            names.append(unescape_name(element.attrib["name"]))
    if not names:
        raise DataFormatError(path, "no <label name=...> elements; expected a MULAN labels header")
    if len(set(names)) != len(names):
        raise DataFormatError(path, "label names repeat; each label must be named once")
    return names


def meka_label_count(relation: str, path: Path) -> tuple[int, bool]:
    """(number of labels, labels_first) from MEKA's `-C n` option in the relation name."""
    match = re.search(r"-C\s+(-?\d+)", relation)
    if match is None:
        raise DataFormatError(
            path, f"relation name {relation!r} has no MEKA '-C n' option and there is no MULAN XML; "
            "expected '-C n' (first n attributes are labels) or '-C -n' (last n)",
            field="@relation",
        )
    n = int(match.group(1))
    if n == 0:
        raise DataFormatError(path, "MEKA '-C 0' declares no labels", field="@relation")
    return abs(n), n > 0


def split_features_labels(
    table: ArffTable, label_columns: list[int]
) -> tuple[np.ndarray | sp.csr_matrix, sp.csr_matrix, list[str]]:
    """(X float32, Y bool CSR, feature names): label columns wherever they sit; the rest are features."""
    is_label = np.zeros(len(table.attribute_names), dtype=bool)
    is_label[label_columns] = True
    feature_columns = np.flatnonzero(~is_label)
    matrix = table.matrix
    if sp.issparse(matrix):
        X = matrix[:, feature_columns].tocsr()
        Y = (matrix[:, label_columns] != 0).tocsr()
    else:
        X = np.ascontiguousarray(matrix[:, feature_columns])
        Y = sp.csr_matrix(matrix[:, label_columns] != 0)
    if sp.issparse(X):
        X.sort_indices()
    return X, Y, [table.attribute_names[j] for j in feature_columns]


def mulan_label_columns(table: ArffTable, label_names: list[str], xml_path: Path) -> list[int]:
    """Column of each XML label in the ARFF header; a missing label is a DataFormatError."""
    position = {name: j for j, name in enumerate(table.attribute_names)}
    missing = [name for name in label_names if name not in position]
    if missing:
        raise DataFormatError(
            table.path,
            f"{len(missing)} label(s) named in {xml_path} are not attributes of this file, "
            f"e.g. {missing[0]!r}; expected every XML label to be an @attribute",
            field="@attribute declarations",
        )
    return [position[name] for name in label_names]


def meka_label_columns(table: ArffTable) -> list[int]:
    """Label columns per the MEKA relation option: first n (`-C n`) or last n (`-C -n`)."""
    n, first = meka_label_count(table.relation, table.path)
    n_attr = len(table.attribute_names)
    if n >= n_attr:
        raise DataFormatError(
            table.path, f"'-C' declares {n} labels but there are only {n_attr} attributes",
            field="@relation",
        )
    return list(range(n)) if first else list(range(n_attr - n, n_attr))

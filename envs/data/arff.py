"""Weka ARFF reader (dense and sparse rows), as MULAN and MEKA ship their multi-label datasets.

Why our own reader: scipy's `loadarff` has no sparse rows, and liac-arff is slow on Delicious-sized
files. Here every value token of a file is converted in one numpy call, so the 3 MB Delicious
training file parses in well under a second; the slow per-token path runs only to locate an error.

Supported: `%` comments, `@relation`, `@attribute NAME TYPE` with TYPE numeric / real / integer /
nominal `{v1,v2,...}` / string, quoted names and values (`'a b'`, `"a"`) and backslash escapes
(`TAG_m\\'usica`), dense rows `v1,v2,...` and sparse rows `{index value, ...}` (omitted entries are
0, i.e. the first nominal value, as in Weka). The table stores a nominal value as its index in the
declaration and a string value as 0 (string attributes are dropped by `envs.data.multilabel`).
Rejected with a DataFormatError naming file, line and attribute (silent wrong data otherwise): the
same attribute name declared twice, non-finite numbers (nan, inf, overflow), missing values `?`
(labelchain does not impute: a guess would silently become training data), a sparse row naming an
index twice, date/relational attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.bulk import first_repeat, parse_numbers, shown, to_numbers
from labelchain.envs.data.errors import DataFormatError

_NUMERIC_TYPES = {"numeric", "real", "integer"}
_UNSUPPORTED_TYPES = {"date", "relational"}
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
    nominal_values: list[list[str] | None]  # None for numeric and string attributes
    matrix: np.ndarray | sp.csr_matrix
    kinds: list[str]  # "numeric", "nominal" or "string", one per attribute
    row_lines: np.ndarray  # 1-based file line of each data row, in row order

    @property
    def n_rows(self) -> int:
        return self.matrix.shape[0]


def read_text(path: Path) -> str:
    """File text as UTF-8, falling back to latin-1 (some distributions are not valid UTF-8)."""
    raw = path.read_bytes()
    if b"\x00" in raw:  # numpy drops trailing NULs when it parses "1\x00" as 1: refuse them all
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise DataFormatError(path, "NUL byte in the file (binary or corrupted data); expected text", line=line)
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


def split_quoted(text: str, path: Path, line_no: int) -> list[str]:
    """Split on commas outside quotes (values like 'a, b' or "x" keep their quotes)."""
    tokens, start, quote, i = [], 0, "", 0
    while i < len(text):
        char = text[i]
        if char == "\\" and quote:
            i += 2
            continue
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            tokens.append(text[start:i])
            start = i + 1
        i += 1
    if quote:
        raise DataFormatError(path, f"unterminated quote {quote} in data row", line=line_no)
    tokens.append(text[start:])
    return tokens


def _parse_type(text: str, name: str, path: Path, line_no: int) -> tuple[str, list[str] | None]:
    """(kind, nominal values or None); DataFormatError for types labelchain does not read."""
    text = text.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise DataFormatError(path, f"nominal type of attribute {name!r} must end with '}}'", line=line_no)
        values = [_strip_quotes(v) for v in split_quoted(text[1:-1], path, line_no)]
        if not values or any(v == "" for v in values):
            raise DataFormatError(path, f"empty value in nominal type of {name!r}", line=line_no)
        if len(set(values)) != len(values):
            raise DataFormatError(path, f"nominal type of {name!r} lists a value twice", line=line_no)
        return "nominal", values
    kind = text.split()[0].lower() if text else ""
    if kind in _NUMERIC_TYPES:
        return "numeric", None
    if kind == "string":
        return "string", None
    expected = "expected numeric, real, integer, string or a nominal {v1,v2,...}"
    if kind in _UNSUPPORTED_TYPES:
        raise DataFormatError(
            path,
            f"attribute {name!r} has type {kind!r}, which labelchain does not read; {expected}",
            line=line_no,
        )
    raise DataFormatError(path, f"unknown attribute type {text!r} for attribute {name!r}; {expected}", line=line_no)


def read_arff(path: str | Path) -> ArffTable:
    """Parse one ARFF file; every format problem raises DataFormatError naming file and line."""
    path = Path(path)
    lines = read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise DataFormatError(path, "file is empty; expected an ARFF header (@relation, @attribute, @data)")
    relation = ""
    names: list[str] = []
    kinds: list[str] = []
    nominals: list[list[str] | None] = []
    declared_on: dict[str, int] = {}
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
            if name in declared_on:  # a later duplicate would silently take the earlier one's role
                raise DataFormatError(
                    path,
                    f"attribute {name!r} is declared twice (first on line {declared_on[name]}); "
                    "expected unique attribute names",
                    line=i + 1,
                    field=f"attribute {name!r}",
                )
            declared_on[name] = i + 1
            kind, values = _parse_type(rest, name, path, i + 1)
            kinds.append(kind)
            nominals.append(values)
            names.append(name)
        elif keyword == "@data":
            data_start = i + 1
            break
        else:
            raise DataFormatError(
                path,
                f"unexpected header line {line[:60]!r}; expected @relation, @attribute or @data",
                line=i + 1,
            )
    if not names:
        raise DataFormatError(path, "no @attribute declarations before the data; expected an ARFF header")
    if data_start is None:
        raise DataFormatError(path, "no @data section: the file is truncated or not ARFF")
    matrix, row_lines = _parse_data(lines, data_start, path, names, nominals, kinds)
    return ArffTable(path, relation, names, nominals, matrix, kinds, row_lines)


def _sparse_pairs(line: str, path: Path, line_no: int) -> list[str]:
    """Tokens `index, value, index, value, ...` of a sparse row `{i v, j w}` (quote-aware)."""
    inner = line[1:-1]
    if "'" not in inner and '"' not in inner:
        tokens = inner.replace(",", " ").split()
        if len(tokens) % 2:
            raise DataFormatError(path, "sparse row must hold 'index value' pairs separated by commas", line=line_no)
        return tokens
    tokens = []
    for item in split_quoted(inner, path, line_no):
        pair = item.strip().split(None, 1)
        if len(pair) != 2:
            raise DataFormatError(path, "sparse row must hold 'index value' pairs separated by commas", line=line_no)
        tokens.extend(pair)
    return tokens


def _parse_data(
    lines: list[str],
    start: int,
    path: Path,
    names: list[str],
    nominals: list[list[str] | None],
    kinds: list[str],
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
    """Collect every row's tokens, then convert them all at once (fast path) and validate."""
    n_attr = len(names)
    dense_tokens: list[str] = []
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
                raise DataFormatError(path, "sparse row must end with '}' (row cut short?)", line=i + 1)
            tokens = _sparse_pairs(line, path, i + 1)
            sparse_idx.extend(tokens[0::2])
            sparse_val.extend(tokens[1::2])
            sparse_counts.append(len(tokens) // 2)
            sparse_lines.append(i + 1)
            is_sparse_row.append(True)
        else:
            quoted = "'" in line or '"' in line
            tokens = split_quoted(line, path, i + 1) if quoted else line.split(",")
            if len(tokens) != n_attr:
                raise DataFormatError(
                    path,
                    f"dense row has {len(tokens)} values, expected {n_attr} (one per @attribute); "
                    "row cut short or header mismatch?",
                    line=i + 1,
                )
            dense_tokens.extend(tokens)
            dense_lines.append(i + 1)
            is_sparse_row.append(False)

    row_lines = np.asarray(sorted(dense_lines + sparse_lines), dtype=np.int64)
    dense = np.zeros((len(dense_lines), n_attr), dtype=np.float32)
    if dense_lines:
        cols = np.tile(np.arange(n_attr), len(dense_lines))
        entry_lines = np.repeat(np.asarray(dense_lines), n_attr)
        dense = _convert(dense_tokens, cols, entry_lines, path, names, nominals, kinds).reshape(-1, n_attr)
    if not sparse_counts:
        return dense, row_lines

    entry_lines = np.repeat(np.asarray(sparse_lines), sparse_counts)
    cols = _parse_indices(sparse_idx, entry_lines, path, n_attr)
    vals = _convert(sparse_val, cols, entry_lines, path, names, nominals, kinds)
    n_sparse = len(sparse_counts)
    rows = np.repeat(np.arange(n_sparse), sparse_counts)
    repeat = first_repeat(rows, cols)
    if repeat is not None:
        col = int(cols[repeat])
        raise DataFormatError(
            path,
            f"sparse row names index {col} twice; expected each index once",
            line=int(entry_lines[repeat]),
            field=f"attribute {names[col]!r}",
        )
    sparse_part = sp.csr_matrix((vals, (rows, cols)), shape=(n_sparse, n_attr), dtype=np.float32)
    sparse_part.sort_indices()
    if dense_lines:  # a file may mix both row styles; keep the file's row order
        order = np.argsort(~np.asarray(is_sparse_row), kind="stable")  # positions of each part
        stacked = sp.vstack([sparse_part, sp.csr_matrix(dense)], format="csr")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return stacked[inverse], row_lines
    return sparse_part, row_lines


def _parse_indices(tokens: list[str], entry_lines: np.ndarray, path: Path, n_attr: int) -> np.ndarray:
    cols = to_numbers(tokens, np.int64, entry_lines, path, "sparse index")
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
    kinds: list[str],
) -> np.ndarray:
    """Values of all tokens as float32; nominal tokens become their declaration index, strings 0."""
    is_nominal = np.array([v is not None for v in nominals], dtype=bool)
    is_string = np.array([k == "string" for k in kinds], dtype=bool)
    # Nominal attributes declared as {0,1,...,k-1} can be read as numbers directly.
    identity = np.array([v is not None and v == [str(j) for j in range(len(v))] for v in nominals], dtype=bool)
    n_values = np.array([len(v) if v is not None else 0 for v in nominals])
    mapped = (is_nominal & ~identity)[cols]
    skipped = is_string[cols]
    values = np.zeros(len(tokens), dtype=np.float64)
    plain = np.flatnonzero(~mapped & ~skipped)
    plain_tokens = tokens if plain.size == len(tokens) else [tokens[k] for k in plain.tolist()]
    values[plain], bad_token = parse_numbers(plain_tokens, integer=False)
    if bad_token is not None:
        at = int(plain[bad_token])
        token = tokens[at].strip()
        what = (
            "missing value '?' is not supported (labelchain does not impute)"
            if token == "?"
            else f"value {shown(token)} is not a number"
        )
        raise DataFormatError(
            path,
            f"{what}; expected a numeric value ([+-]digits[.digits][e[+-]digits], ASCII digits)",
            line=int(entry_lines[at]),
            field=f"attribute {names[int(cols[at])]!r}",
        )
    with np.errstate(over="ignore"):  # 1e39 is finite in float64 but inf once stored as float32
        bad = np.flatnonzero(~np.isfinite(values[plain].astype(np.float32)))
    if bad.size:
        k = plain[bad[0]]
        raise DataFormatError(
            path,
            f"value {shown(tokens[k])} is not a finite number; expected a finite numeric value",
            line=int(entry_lines[k]),
            field=f"attribute {names[int(cols[k])]!r}",
        )
    for k in np.flatnonzero(mapped):  # only attributes with non-numeric nominal values
        col = int(cols[k])
        lookup = nominals[col]
        assert lookup is not None
        token = _strip_quotes(tokens[k])
        if token not in lookup:
            raise DataFormatError(
                path,
                f"value {shown(token)} is not one of the declared values {lookup}",
                line=int(entry_lines[k]),
                field=f"attribute {names[col]!r}",
            )
        values[k] = lookup.index(token)
    check = np.flatnonzero(identity[cols])
    if check.size:
        v = values[check]
        bad = np.flatnonzero((v != np.round(v)) | (v < 0) | (v >= n_values[cols[check]]))
        if bad.size:
            k = check[bad[0]]
            col = int(cols[k])
            raise DataFormatError(
                path,
                f"value {shown(tokens[k])} is not one of the declared values {nominals[col]}",
                line=int(entry_lines[k]),
                field=f"attribute {names[col]!r}",
            )
    return values.astype(np.float32)

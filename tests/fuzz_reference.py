"""Slow, simple reference readers for the fuzz tests (tests/test_fuzz_loaders.py).

They read the subset of each format that the fuzz fixtures use (ARFF with plain names, numeric and
{0,1} attributes; XC and LIBSVM text) line by line with Python's own float/int, and say what the
real loaders must return for a corrupted file: a result (dense arrays), `Invalid` (the loader must
raise DataFormatError) or `Unknown` (outside the subset: only the weaker property is checked).
"""

from __future__ import annotations

import re

import numpy as np


class Invalid(Exception):
    """The file breaks its format: the loader must raise DataFormatError."""


class Unknown(Exception):
    """Outside what the reference reads; the test falls back to 'error or unchanged'."""


_ATTRIBUTE = re.compile(r"@attribute[ \t]+([A-Za-z0-9_.\-]+)[ \t]+(\S+)[ \t]*$", re.IGNORECASE)
_XC_HEADER = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", re.ASCII)  # ASCII: int() takes Arabic digits


# ARFF's numeric grammar, ASCII digits only, spaces or tabs around (nan/inf read, then refused as
# non-finite); Python's float()/int() alone would also take 1_000 and Arabic-Indic digits.
_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
_SPECIAL = re.compile(r"[ \t]*[+-]?(?:inf|infinity|nan)[ \t]*", re.IGNORECASE)
_INTEGER = re.compile(r"[ \t]*([+-]?)([0-9]+)[ \t]*")


def _finite(token: str) -> float:
    if not (_NUMBER.fullmatch(token) or _SPECIAL.fullmatch(token)):
        raise Invalid(f"not a number: {token!r}")
    value = float(token)
    with np.errstate(over="ignore"):
        if not np.isfinite(np.float32(value)):
            raise Invalid(f"not finite: {token!r}")
    return value


def _int(token: str) -> int:
    match = _INTEGER.fullmatch(token)
    digits = match.group(2).lstrip("0") if match else ""
    if match is None or len(digits) > 19:  # int() alone refuses over 4,300 digits
        raise Invalid(f"not an integer: {token!r}")
    value = int(match.group(1) + (digits or "0"))
    if not -(2**63) <= value < 2**63:
        raise Invalid(f"outside int64: {token!r}")
    return value


def _lines(text: str) -> list[str]:
    if "\x00" in text:
        raise Invalid("NUL byte")
    return text.splitlines()


def arff_table(text: str) -> tuple[str, list[str], list[str], np.ndarray]:
    """(relation, attribute names, types 'num'/'01', dense values) of one ARFF text."""
    lines = _lines(text)
    if not any(line.strip() for line in lines):
        raise Invalid("empty")
    relation, names, types, start = "", [], [], None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        keyword = line.split(None, 1)[0].lower()
        if keyword == "@relation":
            relation = line[len("@relation") :]
        elif keyword == "@attribute":
            match = _ATTRIBUTE.match(line)
            if match is None:
                raise Unknown(line)
            name, kind = match.groups()
            if kind.lower() in ("numeric", "real", "integer"):
                types.append("num")
            elif kind == "{0,1}":
                types.append("01")
            else:
                raise Unknown(kind)
            if name in names:
                raise Invalid(f"attribute {name} twice")
            names.append(name)
        elif keyword == "@data":
            start = i + 1
            break
        else:
            raise Invalid(f"header line {line!r}")
    if not names or start is None:
        raise Invalid("no attributes or no @data")
    rows = []
    for raw in lines[start:]:
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if "'" in line or '"' in line:
            raise Invalid("a lone quote")
        row = np.zeros(len(names))
        if line.startswith("{"):
            if not line.endswith("}"):
                raise Invalid("sparse row not closed")
            tokens = line[1:-1].replace(",", " ").split()
            if len(tokens) % 2:
                raise Invalid("odd sparse tokens")
            seen = set()
            for index_token, value_token in zip(tokens[0::2], tokens[1::2]):
                index = _int(index_token)
                if not 0 <= index < len(names) or index in seen:
                    raise Invalid("bad sparse index")
                seen.add(index)
                row[index] = _value(value_token, types[index])
        else:
            tokens = line.split(",")
            if len(tokens) != len(names):
                raise Invalid("dense row length")
            row[:] = [_value(t, kind) for t, kind in zip(tokens, types)]
        rows.append(row)
    return relation, names, types, np.array(rows).reshape(len(rows), len(names))


def _value(token: str, kind: str) -> float:
    value = _finite(token)
    if kind == "01" and value not in (0.0, 1.0):
        raise Invalid(f"{token!r} not in {{0,1}}")
    return value


def arff_dataset(train: str, test: str, xml_labels: list[str] | None) -> tuple:
    """(X_train, Y_train, X_test, Y_test, label names, feature names); MEKA when xml_labels is None."""
    tables = [arff_table(train), arff_table(test)]
    relation, names, types, _ = tables[0]
    if tables[1][1:3] != (names, types):
        raise Invalid("train and test headers differ")
    if xml_labels is not None:
        if any(label not in names for label in xml_labels):
            raise Invalid("an XML label is not an attribute")
        label_columns = [names.index(label) for label in xml_labels]
    else:
        match = re.search(r"-C\s+(-?\d+)", relation, re.ASCII)
        if match is None or int(match.group(1)) == 0 or abs(int(match.group(1))) >= len(names):
            raise Invalid("MEKA -C option")
        n = int(match.group(1))
        label_columns = list(range(n)) if n > 0 else list(range(len(names) + n, len(names)))
    features = [j for j in range(len(names)) if j not in label_columns]
    out = []
    for _, _, _, values in tables:
        if len(values) == 0:
            raise Invalid("no rows")
        labels = values[:, label_columns]
        if not np.isin(labels, (0.0, 1.0)).all():
            raise Invalid("label not 0/1")
        out += [values[:, features], labels != 0]
    return (*out, [names[j] for j in label_columns], [names[j] for j in features])


def _text_row(line: str, low: int) -> tuple[list[int], dict[int, float]]:
    tokens = line.split()
    labels: list[int] = []
    if tokens and ":" not in tokens[0]:
        labels = [_int(t) for t in tokens[0].split(",") if t]
        if len(set(labels)) != len(labels):
            raise Invalid("label id repeated in a row")
        tokens = tokens[1:]
    features: dict[int, float] = {}
    for token in tokens:
        parts = token.split(":")
        if len(parts) != 2:
            raise Invalid(f"feature token {token!r}")
        feature = _int(parts[0])
        value = _finite(parts[1])
        if feature < low or feature in features:
            raise Invalid("feature id below range or repeated")
        features[feature] = value
    return labels, features


def _dense(rows: list, n_features: int, offset: int, column: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    X = np.zeros((len(rows), n_features))
    Y = np.zeros((len(rows), len(column)), dtype=bool)
    for i, (labels, features) in enumerate(rows):
        for feature, value in features.items():
            X[i, feature - offset] = value
        for label in labels:
            Y[i, column[label]] = True
    return X, Y


def xc_dataset(train: str, test: str) -> tuple:
    """(X_train, Y_train, X_test, Y_test) of an XC train/test pair."""
    shapes, parsed = [], []
    for text in (train, test):
        lines = _lines(text)
        header = _XC_HEADER.match(lines[0]) if lines else None
        if header is None:
            raise Invalid("XC header")
        n_docs, n_features, n_labels = (int(g) for g in header.groups())
        if len(lines) - 1 != n_docs or n_docs == 0:
            raise Invalid("document count")
        rows = [_text_row(line, 0) for line in lines[1:]]
        for labels, features in rows:
            if any(f >= n_features for f in features) or any(not 0 <= label < n_labels for label in labels):
                raise Invalid("id out of range")
        shapes.append((n_features, n_labels))
        parsed.append(rows)
    if shapes[0] != shapes[1]:
        raise Invalid("train and test headers differ")
    n_features, n_labels = shapes[0]
    column = {j: j for j in range(n_labels)}
    return (*_dense(parsed[0], n_features, 0, column), *_dense(parsed[1], n_features, 0, column))


def libsvm_dataset(train: str, test: str) -> tuple:
    """(X_train, Y_train, X_test, Y_test, label names) of a LIBSVM multi-label pair."""
    parsed = []
    for text in (train, test):
        if not text.strip():
            raise Invalid("empty")
        parsed.append([_text_row(line, 1) for line in _lines(text)])
    n_features = max([f for rows in parsed for _, features in rows for f in features], default=0)
    space = sorted({label for rows in parsed for labels, _ in rows for label in labels})
    column = {label: j for j, label in enumerate(space)}
    return (
        *_dense(parsed[0], n_features, 1, column),
        *_dense(parsed[1], n_features, 1, column),
        [str(v) for v in space],
    )

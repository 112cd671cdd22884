"""Sparse text formats: the Extreme Classification Repository's and LIBSVM's multi-label files.

XC format: a header line `n_docs n_features n_labels`, then one document per line,
`l1,l2 f:v f:v ...` with 0-based label and feature ids. LIBSVM multi-label: no header,
`l1,l2 f:v ...` with 1-based feature ids and integer labels (any integers; the label space is the
sorted union of train and test labels). In both, a document may have no labels: its line starts
with a feature (or is empty). A line naming a feature id or a label id twice is a DataFormatError
(scipy would silently add the values or merge the labels). Tokens are converted in bulk with numpy for speed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.arff import read_text
from labelchain.envs.data.bulk import first_repeat, shown, to_numbers
from labelchain.envs.atomic import atomic_write_text
from labelchain.envs.data.errors import DataFormatError

# Declared sizes above this are refused: a 20-byte header could otherwise ask for gigabytes of names and
# columns. 2**22 covers the public XC sets (Amazon-3M: 2.8M labels, WikiLSHTC-325K: 1.6M features).
MAX_DIMENSION = 2**22
_XC_HEADER = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", re.ASCII)  # ASCII: int() takes Arabic digits


@dataclass
class RawRows:
    """Rows of a sparse text file before ids are checked against a header or label space."""

    path: Path
    line_numbers: np.ndarray  # 1-based line of each row
    feature_indptr: np.ndarray
    feature_ids: np.ndarray
    feature_values: np.ndarray
    label_indptr: np.ndarray
    label_ids: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.line_numbers)


def is_xc_file(path: Path) -> bool:
    """True if the first line is an XC header (three integers), which no LIBSVM line can be."""
    with open(path, "rb") as handle:
        first = handle.readline().decode("latin-1")
    return bool(_XC_HEADER.match(first))


def _parse_rows(lines: list[str], first_line: int, path: Path) -> RawRows:
    feature_tokens: list[str] = []
    feature_counts: list[int] = []
    label_tokens: list[str] = []
    label_counts: list[int] = []
    for line in lines:
        tokens = line.split()
        if tokens and ":" not in tokens[0]:
            labels = [t for t in tokens[0].split(",") if t]
            tokens = tokens[1:]
        else:
            labels = []
        label_tokens.extend(labels)
        label_counts.append(len(labels))
        feature_tokens.extend(tokens)
        feature_counts.append(len(tokens))
    line_numbers = np.arange(first_line, first_line + len(lines))
    feature_lines = np.repeat(line_numbers, feature_counts)
    pairs = [t.split(":") for t in feature_tokens]
    for k, pair in enumerate(pairs):
        if len(pair) != 2:
            raise DataFormatError(
                path,
                f"feature token {shown(feature_tokens[k])} is not 'id:value'",
                line=int(feature_lines[k]),
            )
    ids = to_numbers([p[0] for p in pairs], np.int64, feature_lines, path, "feature id")
    values = to_numbers([p[1] for p in pairs], np.float32, feature_lines, path, "feature value")
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:  # nan/inf (or a float32 overflow) would train silently on garbage
        k = int(bad[0])
        raise DataFormatError(
            path,
            f"feature value {shown(pairs[k][1])} is not a finite number",
            line=int(feature_lines[k]),
            field=f"feature {ids[k]}",
        )
    repeat = first_repeat(np.repeat(np.arange(len(feature_counts)), feature_counts), ids)
    if repeat is not None:
        raise DataFormatError(
            path,
            f"feature id {ids[repeat]} appears twice in the row; expected each id once",
            line=int(feature_lines[repeat]),
        )
    label_lines = np.repeat(line_numbers, label_counts)
    label_ids = to_numbers(label_tokens, np.int64, label_lines, path, "label id")
    repeat = first_repeat(np.repeat(np.arange(len(label_counts)), label_counts), label_ids)
    if repeat is not None:  # merged silently otherwise; a repeated index is an error in every format
        raise DataFormatError(
            path,
            f"label id {label_ids[repeat]} appears twice in the row; expected each id once",
            line=int(label_lines[repeat]),
        )
    return RawRows(
        path,
        line_numbers,
        np.concatenate([[0], np.cumsum(feature_counts)]).astype(np.int64),
        ids,
        values,
        np.concatenate([[0], np.cumsum(label_counts)]).astype(np.int64),
        label_ids,
    )


def _check_range(ids: np.ndarray, indptr: np.ndarray, rows: RawRows, low: int, high: int, what: str) -> None:
    bad = np.flatnonzero((ids < low) | (ids >= high))
    if bad.size:
        k = int(bad[0])
        row = int(np.searchsorted(indptr, k, side="right") - 1)
        raise DataFormatError(
            rows.path,
            f"{what} {ids[k]} out of range; expected {low}..{high - 1}",
            line=int(rows.line_numbers[row]),
        )


def _to_matrices(
    rows: RawRows,
    feature_offset: int,
    n_features: int,
    label_column: np.ndarray | None,
    n_labels: int,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(X float32 CSR, Y bool CSR); `label_column` maps raw label ids to columns (None: identity)."""
    X = sp.csr_matrix(
        (rows.feature_values, rows.feature_ids - feature_offset, rows.feature_indptr),
        shape=(rows.n_rows, n_features),
        dtype=np.float32,
    )
    X.sum_duplicates()
    columns = rows.label_ids if label_column is None else label_column
    Y = sp.csr_matrix(
        (np.ones(len(columns), dtype=bool), columns, rows.label_indptr),
        shape=(rows.n_rows, n_labels),
        dtype=bool,
    )
    Y.sum_duplicates()
    return X, Y


def _check_dimension(path: Path, size: int, what: str, line: int | None = None) -> None:
    if size > MAX_DIMENSION:
        raise DataFormatError(
            path,
            f"{what} {size:,} is above the largest supported, {MAX_DIMENSION:,} (textformats.MAX_DIMENSION)",
            line=line,
        )


def read_xc(path: str | Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """One XC-format file as (X float32 CSR, Y bool CSR), checked against its header."""
    path = Path(path)
    lines = read_text(path).splitlines()
    if not lines:
        raise DataFormatError(path, "file is empty; expected a header 'n_docs n_features n_labels'")
    header = _XC_HEADER.match(lines[0])
    if header is None:
        raise DataFormatError(path, f"header {lines[0][:60]!r} is not 'n_docs n_features n_labels'", line=1)
    n_docs, n_features, n_labels = (int(g) for g in header.groups())
    _check_dimension(path, n_features, "header declares n_features", line=1)
    _check_dimension(path, n_labels, "header declares n_labels", line=1)
    body = lines[1:]
    if len(body) != n_docs:
        raise DataFormatError(
            path,
            f"header says {n_docs} documents but the file has {len(body)} lines after it",
            line=1,
        )
    rows = _parse_rows(body, 2, path)
    _check_range(rows.feature_ids, rows.feature_indptr, rows, 0, n_features, "feature id")
    _check_range(rows.label_ids, rows.label_indptr, rows, 0, n_labels, "label id")
    return _to_matrices(rows, 0, n_features, None, n_labels)


def read_libsvm_pair(
    train_path: str | Path, test_path: str | Path
) -> tuple[tuple[sp.csr_matrix, sp.csr_matrix], tuple[sp.csr_matrix, sp.csr_matrix], list[str]]:
    """Train and test LIBSVM multi-label files over one shared feature and label space.

    Returns ((X_train, Y_train), (X_test, Y_test), label_names); label names are the integer labels
    as strings, sorted numerically; the feature count is the largest feature id seen.
    """
    parsed = []
    for path in (Path(train_path), Path(test_path)):
        text = read_text(path)
        if not text.strip():
            raise DataFormatError(path, "file is empty; expected LIBSVM lines 'l1,l2 f:v ...'")
        rows = _parse_rows(text.splitlines(), 1, path)
        _check_range(
            rows.feature_ids,
            rows.feature_indptr,
            rows,
            1,
            MAX_DIMENSION + 1,
            "feature id (LIBSVM ids are 1-based)",
        )
        parsed.append(rows)
    n_features = int(max((r.feature_ids.max(initial=0) for r in parsed)))
    label_space = np.unique(np.concatenate([r.label_ids for r in parsed]))
    out = [_to_matrices(r, 1, n_features, np.searchsorted(label_space, r.label_ids), len(label_space)) for r in parsed]
    return out[0], out[1], [str(int(v)) for v in label_space]


def write_xc(path: str | Path, X: np.ndarray | sp.spmatrix, Y: sp.spmatrix) -> None:
    """Write (X, Y) as one XC-format file that `read_xc` (and Omikuji's loader) read back.

    A label-less document's line starts with a space (an empty label field), which both readers
    take as "no labels"; only stored non-zero features are written, as `%.9g` (float32 round-trips).
    The file is written to a temporary name in the same folder, then renamed.
    """
    path = Path(path)
    X = sp.csr_matrix(X, dtype=np.float32)
    X.eliminate_zeros()
    X.sort_indices()
    Y = sp.csr_matrix(Y, dtype=bool)
    Y.eliminate_zeros()
    Y.sort_indices()
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    lines = [f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}"]
    for row in range(X.shape[0]):
        labels = ",".join(map(str, Y.indices[Y.indptr[row] : Y.indptr[row + 1]]))
        start, end = X.indptr[row], X.indptr[row + 1]
        features = " ".join(f"{f}:{v:.9g}" for f, v in zip(X.indices[start:end].tolist(), X.data[start:end].tolist()))
        lines.append(f"{labels} {features}" if features else labels)
    atomic_write_text(path, "\n".join(lines) + "\n", encoding="ascii")

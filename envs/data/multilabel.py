"""Multi-label views of ARFF tables: which attributes are labels (MULAN XML or MEKA `-C n`), and
how the other attributes become features.

Feature rules (each dropped or expanded attribute is named in `Dataset.metadata["notes"]`):
  * numeric attributes are kept as they are;
  * a two-valued nominal becomes one 0/1 column: when its two values are a known yes/no pair
    (`BOOLEAN_PAIRS`, case-insensitive, in either declaration order) the "no" value is 0 and the "yes"
    value 1; otherwise the first declared value is 0 and the second 1 (Weka's order);
  * a nominal with more than two values is one-hot encoded (`name=value` columns), unless every
    row of train+test (at least `ID_MIN_ROWS` rows) takes a different value: then it identifies
    rows (an ID, e.g. a protein name), carries nothing a model can generalise from, and is dropped;
  * string attributes (free text or IDs) are dropped.
Labels must read as 0 or 1 (numeric 0/1, or a two-valued nominal under the rule above); anything
else (-1, 2, 0.4, a third nominal value) is a DataFormatError naming line and attribute.
A MULAN XML may leave label-like attributes out: they are features, as MULAN reads them, but a
two-valued or 0/1 attribute lying between the XML's labels, or alone on the far side of them (the
features fill the other side), is probably a label left out by mistake, so it gets a note too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.arff import ArffTable, unescape_name
from labelchain.envs.data.errors import DataFormatError

# (value read as 0, value read as 1), compared lower-cased and stripped.
BOOLEAN_PAIRS = (
    ("0", "1"),
    ("no", "yes"),
    ("n", "y"),
    ("false", "true"),
    ("f", "t"),
    ("-1", "1"),
    ("negative", "positive"),
    ("absent", "present"),
    ("off", "on"),
)
ID_MIN_ROWS = 20  # fewer rows with distinct values may just be a small categorical sample


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
            path,
            f"not well-formed XML ({err.msg if hasattr(err, 'msg') else err})",
            line=err.position[0],
        ) from None
    except (LookupError, ValueError) as err:  # e.g. a damaged encoding="..." declaration
        raise DataFormatError(path, f"unreadable XML ({err})", line=1) from None
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
    match = re.search(r"-C\s+(-?\d+)", relation, re.ASCII)
    if match is None:
        raise DataFormatError(
            path,
            f"relation name {relation!r} has no MEKA '-C n' option and there is no MULAN XML; "
            "expected '-C n' (first n attributes are labels) or '-C -n' (last n)",
            field="@relation",
        )
    n = int(match.group(1))
    if n == 0:
        raise DataFormatError(path, "MEKA '-C 0' declares no labels", field="@relation")
    return abs(n), n > 0


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
            table.path,
            f"'-C' declares {n} labels but there are only {n_attr} attributes",
            field="@relation",
        )
    return list(range(n)) if first else list(range(n_attr - n, n_attr))


def binary_codes(values: list[str]) -> np.ndarray:
    """0/1 code of each declared value of a two-valued nominal (see the module docstring)."""
    lowered = [v.strip().lower() for v in values]
    for no, yes in BOOLEAN_PAIRS:
        if sorted(lowered) == sorted([no, yes]):
            return np.array([0.0 if v == no else 1.0 for v in lowered])
    return np.arange(len(values), dtype=np.float64)


def _recode(values: list[str] | None) -> np.ndarray | None:
    """Declaration index -> code, or None when the index already is the code."""
    if values is None or len(values) != 2:
        return None
    codes = binary_codes(values)
    return None if np.array_equal(codes, np.arange(2)) else codes


@dataclass
class ColumnPlan:
    """Roles of a header's attributes, decided once for train and test together."""

    label_columns: list[int]
    feature_columns: list[int]
    one_hot: dict[int, list[str]] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _column(matrix: np.ndarray | sp.csr_matrix, j: int) -> np.ndarray:
    if isinstance(matrix, np.ndarray):
        return np.asarray(matrix[:, j])
    return matrix[:, j].toarray().ravel()


def plan_columns(tables: list[ArffTable], label_columns: list[int]) -> ColumnPlan:
    """Which attributes become features, one-hot blocks or are dropped (module docstring rules)."""
    head = tables[0]
    plan = ColumnPlan(label_columns, [])
    for j in label_columns:
        if head.kinds[j] == "string":
            raise DataFormatError(
                head.path,
                "a label attribute has type string; expected 0/1 values",
                field=f"attribute {head.attribute_names[j]!r}",
            )
    labels = set(label_columns)
    for j, name in enumerate(head.attribute_names):
        values = head.nominal_values[j]
        if j in labels:
            continue
        if head.kinds[j] == "string":
            plan.notes.append(f"dropped string attribute {name!r} (free text or an ID, not a feature)")
            continue
        if values is not None and len(values) > 2:
            used = np.concatenate([_column(t.matrix, j) for t in tables])
            if len(used) >= ID_MIN_ROWS and len(np.unique(used)) == len(used):
                plan.notes.append(f"dropped nominal attribute {name!r}: every row has its own value (an ID)")
                continue
            plan.one_hot[j] = values
            plan.feature_names.extend(f"{name}={v}" for v in values)
            plan.notes.append(f"one-hot encoded nominal attribute {name!r} ({len(values)} values)")
        else:
            plan.feature_names.append(name)
        plan.feature_columns.append(j)
    return plan


def _label_like(tables: list[ArffTable], j: int) -> bool:
    """A two-valued nominal, or a numeric attribute holding only 0 and 1 in every table."""
    head = tables[0]
    if head.kinds[j] == "string":
        return False
    values = head.nominal_values[j]
    if values is not None:
        return len(values) == 2
    return all(np.isin(_column(t.matrix, j), (0.0, 1.0)).all() for t in tables)


def unlisted_label_notes(tables: list[ArffTable], label_columns: list[int], xml_name: str) -> list[str]:
    """Notes for label-like features placed where labels sit (module docstring): legal, but said."""
    n_attr = len(tables[0].attribute_names)
    low, high = min(label_columns), max(label_columns)
    labels = set(label_columns)
    before, after = list(range(low)), list(range(high + 1, n_attr))
    places = [(j, "between") for j in range(low, high) if j not in labels]
    if 0 < len(after) < len(before):
        places += [(j, "after") for j in after]
    if 0 < len(before) < len(after):
        places += [(j, "before") for j in before]
    found = [(j, where) for j, where in places if _label_like(tables, j)]
    if not found:
        return []
    shown = ", ".join(f"{tables[0].attribute_names[j]!r} ({where} the labels)" for j, where in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return [
        f"{len(found)} attribute(s) not named in {xml_name} look like labels (two-valued or 0/1, placed with "
        f"the labels) and are read as features, as MULAN does: {shown}{more}; "
        "add them to the XML if they are labels"
    ]


def _blocks(table: ArffTable, columns: list[int], one_hot: dict[int, list[str]]) -> np.ndarray | sp.csr_matrix:
    """The columns' values after recoding two-valued nominals and one-hot encoding the others."""
    matrix = table.matrix
    special = [j for j in columns if j in one_hot or _recode(table.nominal_values[j]) is not None]
    if not special:
        if isinstance(matrix, np.ndarray):
            return np.ascontiguousarray(matrix[:, columns])
        return matrix[:, columns].tocsr()
    pieces: list[np.ndarray | sp.csr_matrix] = []
    run: list[int] = []
    for j in columns + [-1]:
        if j >= 0 and j not in special:
            run.append(j)
            continue
        if run:
            pieces.append(matrix[:, run])
            run = []
        if j < 0:
            break
        index = _column(matrix, j).astype(np.int64)  # absent sparse entries are index 0, as in Weka
        if j in one_hot:
            piece = np.zeros((len(index), len(one_hot[j])), dtype=np.float32)
            piece[np.arange(len(index)), index] = 1
        else:
            codes = _recode(table.nominal_values[j])
            assert codes is not None
            piece = codes[index].astype(np.float32)[:, None]
        pieces.append(sp.csr_matrix(piece) if sp.issparse(matrix) else piece)
    if sp.issparse(matrix):
        return sp.hstack(pieces, format="csr", dtype=np.float32)
    return np.ascontiguousarray(np.hstack(pieces), dtype=np.float32)


def _check_binary(table: ArffTable, raw: np.ndarray | sp.csr_matrix, columns: list[int]) -> None:
    """Labels must be 0 or 1; name the first row and label attribute that is not."""
    if isinstance(raw, np.ndarray):
        rows, cols = np.nonzero(raw != 0)
        values = raw[rows, cols]
    else:
        coo = raw.tocoo()
        rows, cols, values = coo.row, coo.col, coo.data
    bad = np.flatnonzero(values != 1)
    if not bad.size:
        return
    k = bad[np.lexsort((cols[bad], rows[bad]))[0]]  # first in file order
    j = columns[int(cols[k])]
    values_of = table.nominal_values[j]
    shown = (
        repr(values_of[int(values[k])])
        if values_of is not None and _recode(values_of) is None and 0 <= values[k] < len(values_of)
        else f"{float(values[k]):g}"
    )
    raise DataFormatError(
        table.path,
        f"label value {shown} is not 0 or 1; labels must be 0/1 (or a two-valued nominal)",
        line=int(table.row_lines[int(rows[k])]),
        field=f"attribute {table.attribute_names[j]!r}",
    )


def features_labels(table: ArffTable, plan: ColumnPlan) -> tuple[np.ndarray | sp.csr_matrix, sp.csr_matrix]:
    """(X float32, Y bool CSR) of one table under `plan`."""
    X = _blocks(table, plan.feature_columns, plan.one_hot)
    raw_Y = _blocks(table, plan.label_columns, {})
    _check_binary(table, raw_Y, plan.label_columns)
    Y = sp.csr_matrix(raw_Y != 0, dtype=bool)
    if not isinstance(X, np.ndarray):
        X.sort_indices()
    return X, Y

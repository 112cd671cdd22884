"""One entry point for every dataset: `load_dataset(name_or_path)`.

Names (`DATASET_NAMES`) resolve to folders of the data directory, laid out as the public
distributions ship them (see shared/data/README.md): `mulan/<name>/` and `reuters21578/`.
The data directory is looked for, in order, in the `data_dir` argument, the LABELCHAIN_DATA
environment variable and `<repo root>/../shared/data`; the first that holds the dataset wins.

A path may be any folder of one of these kinds (checked in this order):
  * Reuters-21578: holds `reut2-*.sgm` (ModApte-90, TF-IDF fitted on train; see envs.data.reuters);
  * MULAN: one `*.xml` label header plus `*-train.arff` and `*-test.arff` (or `*-train-sparse.arff`
    and `*-test-sparse.arff`); labels are the attributes the XML names, wherever they sit;
  * MEKA: the same ARFF pair without an XML; labels come from `-C n` in the relation name;
  * text: `train.txt` and `test.txt`, in the Extreme Classification Repository format when the
    first line is a `n_docs n_features n_labels` header, else LIBSVM multi-label (1-based features).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from envs.data import arff, textformats
from envs.data.cache import cache_key, default_cache_dir, load_cached, save_dataset
from envs.data.dataset import Dataset, Split
from envs.data.errors import DataFormatError, DataNotFoundError

# Bump when parsing or featurizing changes, so stale cache entries are never read.
LOADER_VERSION = "labelchain-datasets-1"

DATASET_NAMES: tuple[str, ...] = (
    "emotions", "scene", "yeast", "medical", "enron", "reuters21578", "bibtex", "corel5k", "delicious",
)
_FOLDERS = {name: Path("mulan") / name for name in DATASET_NAMES} | {
    "reuters21578": Path("reuters21578")
}
_SOURCES = (
    "MULAN datasets: https://github.com/tsoumakas/mulan (data/multi-label), mirrored on "
    "https://mulan.sourceforge.net/datasets-mlc.html; Reuters-21578 Distribution 1.0: "
    "https://archive.ics.uci.edu/dataset/137/reuters+21578+text+categorization+collection"
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir_candidates(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """(folder, where the folder came from) in lookup order."""
    places = []
    if data_dir is not None:
        places.append((Path(data_dir), "data_dir argument"))
    env = os.environ.get("LABELCHAIN_DATA")
    if env:
        places.append((Path(env), "LABELCHAIN_DATA"))
    places.append((REPO_ROOT.parent / "shared" / "data", "default <repo root>/../shared/data"))
    return places


def dataset_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder holding the named dataset's files; DataNotFoundError lists every place looked at."""
    if name not in _FOLDERS:
        raise ValueError(f"unknown dataset {name!r}; known names: {', '.join(DATASET_NAMES)} (or pass a path)")
    looked = []
    for root, origin in data_dir_candidates(data_dir):
        folder = root / _FOLDERS[name]
        if folder.is_dir() and any(folder.iterdir()):
            return folder
        looked.append(f"  {folder} ({origin})")
    raise DataNotFoundError(
        f"dataset {name!r} not found; looked in:\n" + "\n".join(looked)
        + f"\nGet the files from {_SOURCES}, unpack them as <data dir>/{_FOLDERS[name].as_posix()}/, "
        "and pass data_dir=... or set LABELCHAIN_DATA."
    )


def _arff_pair(folder: Path) -> tuple[Path, Path]:
    pair = []
    for part in ("train", "test"):
        for pattern in (f"*-{part}.arff", f"*-{part}-sparse.arff", f"*{part}*.arff"):
            found = sorted(folder.glob(pattern))
            if len(found) == 1:
                pair.append(found[0])
                break
            if len(found) > 1:
                raise DataFormatError(folder, f"several {pattern} files ({[p.name for p in found]}); "
                                      "expected one training and one test ARFF")
        else:
            raise DataNotFoundError(f"{folder}: no {part} ARFF file (expected *-{part}.arff)")
    return pair[0], pair[1]


def _build_arff(name: str, folder: Path, train_path: Path, test_path: Path, xml: Path | None) -> Dataset:
    tables = [arff.read_arff(train_path), arff.read_arff(test_path)]
    if tables[0].attribute_names != tables[1].attribute_names:
        raise DataFormatError(test_path, f"@attribute declarations differ from those of {train_path}",
                              field="@attribute declarations")
    if xml is not None:
        label_names = arff.read_mulan_xml(xml)
        columns = [arff.mulan_label_columns(t, label_names, xml) for t in tables]
    else:
        columns = [arff.meka_label_columns(t) for t in tables]
        label_names = [tables[0].attribute_names[j] for j in columns[0]]
    splits = []
    feature_names: list[str] = []
    for table, cols in zip(tables, columns):
        X, Y, feature_names = arff.split_features_labels(table, cols)
        splits.append(Split(X, Y))
    return Dataset(name, splits[0], splits[1], label_names, feature_names, source=str(folder))


def _build_text(name: str, folder: Path, train_path: Path, test_path: Path) -> Dataset:
    if textformats.is_xc_file(train_path):
        (Xtr, Ytr), (Xte, Yte) = textformats.read_xc(train_path), textformats.read_xc(test_path)
        for a, b, what in ((Xtr, Xte, "features"), (Ytr, Yte, "labels")):
            if a.shape[1] != b.shape[1]:
                raise DataFormatError(test_path, f"header declares {b.shape[1]} {what} but "
                                      f"{train_path.name} declares {a.shape[1]}", line=1)
        label_names = [str(j) for j in range(Ytr.shape[1])]
    else:
        (Xtr, Ytr), (Xte, Yte), label_names = textformats.read_libsvm_pair(train_path, test_path)
    feature_names = [str(j) for j in range(Xtr.shape[1])]
    return Dataset(name, Split(Xtr, Ytr), Split(Xte, Yte), label_names, feature_names, str(folder))


def _plan(name: str, folder: Path) -> tuple[list[Path], dict[str, Any], Callable[[], Dataset]]:
    """(source files, options, builder) for a dataset folder of any supported kind."""
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} is not a folder; pass a dataset name ({', '.join(DATASET_NAMES)}) "
                                "or a dataset folder")
    sgml = sorted(folder.glob("reut2-*.sgm"))
    if sgml:
        from envs.data import reuters

        options = dict(reuters.TFIDF_OPTIONS)
        return sgml, {"kind": "reuters", "tfidf": options}, lambda: _named(reuters.load_reuters(folder, options), name)
    if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
        files = [folder / "train.txt", folder / "test.txt"]
        return files, {"kind": "text"}, lambda: _build_text(name, folder, *files)
    if any(folder.glob("*.arff")):
        train_path, test_path = _arff_pair(folder)
        xmls = sorted(folder.glob("*.xml"))
        if len(xmls) > 1:
            raise DataFormatError(folder, f"several XML headers {[p.name for p in xmls]}; expected one")
        xml = xmls[0] if xmls else None
        files = [train_path, test_path] + ([xml] if xml else [])
        kind = "mulan" if xml else "meka"
        return files, {"kind": kind}, lambda: _build_arff(name, folder, train_path, test_path, xml)
    raise DataNotFoundError(
        f"{folder}: no dataset files found; expected reut2-*.sgm, train.txt + test.txt, "
        "or *-train.arff + *-test.arff (+ one MULAN *.xml)"
    )


def _named(dataset: Dataset, name: str) -> Dataset:
    dataset.name = name
    return dataset


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    split_index: int | None = None,
) -> Dataset:
    """Load a named dataset (see DATASET_NAMES) or a dataset folder (see the module docstring).

    A str equal to a dataset name is that name; write "./emotions" for a folder of that name.

    `cache_dir` defaults to LABELCHAIN_CACHE, else `<repo root>/.cache/labelchain`. `split_index`
    (0..9) replaces the shipped train/test split by one of the 10 random splits in the folder's
    `clprnn-splits/` (Delicious), which number rows of train+test from 1.
    """
    if isinstance(name_or_path, str) and name_or_path in _FOLDERS:  # "./emotions" is a path
        name, folder = name_or_path, dataset_folder(name_or_path, data_dir)
    else:
        folder = Path(name_or_path).expanduser()
        name = folder.resolve().name
    files, options, build = _plan(name, folder)
    dataset = None
    entry = None
    if cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir(REPO_ROOT)
        entry = root / f"{name}-{cache_key(LOADER_VERSION, options, files)}"
        dataset = load_cached(entry)
    if dataset is None:
        dataset = build()
        if entry is not None:
            save_dataset(dataset, entry)
    if split_index is not None:
        dataset = resplit(dataset, folder, split_index)
    return dataset


def resplit(dataset: Dataset, folder: Path, split_index: int) -> Dataset:
    """Dataset re-split by column `split_index` of `clprnn-splits/*_trSplit.txt` / `*_tstSplit.txt`."""
    split_folder = folder / "clprnn-splits"
    tr, ts = sorted(split_folder.glob("*_trSplit.txt")), sorted(split_folder.glob("*_tstSplit.txt"))
    if len(tr) != 1 or len(ts) != 1:
        raise DataNotFoundError(f"{split_folder}: expected one *_trSplit.txt and one *_tstSplit.txt")
    n_total = len(dataset.train) + len(dataset.test)
    rows = [_split_column(path, split_index, n_total) for path in (tr[0], ts[0])]
    if len(np.intersect1d(rows[0], rows[1])) or len(rows[0]) + len(rows[1]) != n_total:
        raise DataFormatError(ts[0], f"split {split_index} is not a partition of the {n_total} rows of "
                              f"train+test together with {tr[0].name}")
    stack = sp.vstack if sp.issparse(dataset.train.X) else np.vstack
    X = stack([dataset.train.X, dataset.test.X])
    X = X.tocsr() if sp.issparse(X) else X
    Y = sp.vstack([dataset.train.Y, dataset.test.Y], format="csr")
    both = Split(X, Y)
    return Dataset(f"{dataset.name}-split{split_index}", both.subset(rows[0]), both.subset(rows[1]),
                   dataset.label_names, dataset.feature_names, dataset.source)


def _split_column(path: Path, split_index: int, n_total: int) -> np.ndarray:
    """0-based row numbers of one split column; the files hold 1-based rows, one split per column."""
    try:
        table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise DataFormatError(path, f"expected whitespace-separated integer row numbers ({err})") from None
    if not 0 <= split_index < table.shape[1]:
        raise ValueError(f"split_index must be in 0..{table.shape[1] - 1}, got {split_index}")
    rows = table[:, split_index]
    if rows.min() < 1 or rows.max() > n_total:
        raise DataFormatError(path, f"row numbers must be 1..{n_total} (1-based)", field=f"column {split_index}")
    return rows - 1

"""One entry point for every dataset: `load_dataset(name_or_path)`.

Names and data folders: see `envs.data.locate`. A path may be a folder or a file:
  * Reuters-21578 folder: holds `reut2-*.sgm` (ModApte-90, TF-IDF fitted on train; envs.data.reuters);
  * MULAN folder: one `*.xml` label header plus `*-train.arff` and `*-test.arff` (or `*-train-sparse.arff`
    and `*-test-sparse.arff`); labels are the attributes the XML names, wherever they sit;
  * MEKA folder: the same ARFF pair without an XML; labels come from `-C n` in the relation name;
  * text folder: `train.txt` and `test.txt`, in the Extreme Classification Repository format when the
    first line is a `n_docs n_features n_labels` header, else LIBSVM multi-label (1-based features);
  * a folder with a single ARFF (no train/test pair), or a path to one ARFF or text file: the whole
    dataset, split by `seeded_split` (`test_fraction`, `split_seed`); the split is logged and recorded
    in `Dataset.metadata["split"]`. A MULAN file's XML is `<stem>.xml` or the folder's only XML.
Feature rules for ARFF attributes (nominal, string, ID): see `envs.data.multilabel`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data import arff, multilabel, textformats
from labelchain.envs.data.cache import cache_key, default_cache_dir, load_cached, save_dataset
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.data.locate import DATASET_NAMES, REPO_ROOT, data_dir_candidates, dataset_folder, resolve

__all__ = ["DATASET_NAMES", "REPO_ROOT", "data_dir_candidates", "dataset_folder", "load_dataset"]

log = logging.getLogger(__name__)

# Bump when parsing or featurizing changes, so stale cache entries are never read.
LOADER_VERSION = "labelchain-datasets-3"  # 3: strict numbers, repeated label ids and NEWIDs refused
_TEXT_SUFFIXES = (".txt", ".svm", ".libsvm", ".xc")


def _arff_files(folder: Path) -> list[Path]:
    """[train, test] ARFF of a folder, or [the one ARFF] of a folder that ships no split."""
    found_pair = []
    for part in ("train", "test"):
        for pattern in (f"*-{part}.arff", f"*-{part}-sparse.arff", f"*{part}*.arff"):
            found = sorted(folder.glob(pattern))
            if len(found) > 1:
                raise DataFormatError(
                    folder,
                    f"several {pattern} files ({[p.name for p in found]}); expected one training and one test ARFF",
                )
            if found:
                found_pair.append(found[0])
                break
    whole = sorted(folder.glob("*.arff"))
    if len(found_pair) == 2 and found_pair[0] != found_pair[1]:
        return found_pair
    if found_pair and len(whole) > 1:
        raise DataNotFoundError(f"{folder}: {found_pair[0].name} has no matching train/test partner ARFF")
    if len(whole) != 1:
        raise DataFormatError(
            folder,
            f"several ARFF files {[p.name for p in whole]} and none named *-train/*-test; "
            "expected a *-train.arff + *-test.arff pair or one ARFF to split",
        )
    return whole


def _xml_for(folder: Path, arff_path: Path | None = None) -> Path | None:
    """The MULAN XML: `<stem>.xml` next to `arff_path` if present, else the folder's only XML."""
    if arff_path is not None and arff_path.with_suffix(".xml").is_file():
        return arff_path.with_suffix(".xml")
    xmls = sorted(folder.glob("*.xml"))
    if len(xmls) > 1:
        raise DataFormatError(folder, f"several XML headers {[p.name for p in xmls]}; expected one")
    return xmls[0] if xmls else None


def _check_rows(path: Path, n_rows: int) -> None:
    if n_rows == 0:
        raise DataFormatError(path, "no data rows; expected at least one document")


def _build_arff(name: str, folder: Path, paths: list[Path], xml: Path | None, split: dict | None) -> Dataset:
    tables = [arff.read_arff(path) for path in paths]
    for table in tables:
        _check_rows(table.path, table.n_rows)
    for table in tables[1:]:
        if (table.attribute_names, table.kinds, table.nominal_values) != (
            tables[0].attribute_names,
            tables[0].kinds,
            tables[0].nominal_values,
        ):
            raise DataFormatError(
                table.path, f"@attribute declarations differ from those of {paths[0]}", field="@attribute declarations"
            )
    if xml is not None:
        label_names = multilabel.read_mulan_xml(xml)
        label_columns = multilabel.mulan_label_columns(tables[0], label_names, xml)
    else:
        label_columns = multilabel.meka_label_columns(tables[0])
        label_names = [tables[0].attribute_names[j] for j in label_columns]
    plan = multilabel.plan_columns(tables, label_columns)
    if xml is not None:
        plan.notes.extend(multilabel.unlisted_label_notes(tables, label_columns, xml.name))
    parts = [multilabel.features_labels(table, plan) for table in tables]
    if any(sp.issparse(X) for X, _ in parts):  # one type for both splits: CSR if any row was sparse
        parts = [(sp.csr_matrix(X), Y) for X, Y in parts]
    metadata: dict[str, Any] = {"notes": list(plan.notes)}
    if split is not None:
        parts, metadata = seeded_split(parts[0], paths[0], metadata, **split)
    return Dataset(
        name, Split(*parts[0]), Split(*parts[1]), label_names, plan.feature_names, source=str(folder), metadata=metadata
    )


def _build_text(name: str, folder: Path, paths: list[Path], split: dict | None) -> Dataset:
    if textformats.is_xc_file(paths[0]):
        parts = [textformats.read_xc(path) for path in paths]
        if len(paths) == 2:
            for a, b, what in ((parts[0][0], parts[1][0], "features"), (parts[0][1], parts[1][1], "labels")):
                if a.shape[1] != b.shape[1]:
                    raise DataFormatError(
                        paths[1],
                        f"header declares {b.shape[1]} {what} but {paths[0].name} declares {a.shape[1]}",
                        line=1,
                    )
        label_names = [str(j) for j in range(parts[0][1].shape[1])]
    else:
        train, test, label_names = textformats.read_libsvm_pair(paths[0], paths[-1])
        parts = [train, test][: len(paths)]
    for path, (X, _) in zip(paths, parts):
        _check_rows(path, X.shape[0])
    metadata: dict[str, Any] = {"notes": []}
    if split is not None:
        parts, metadata = seeded_split(parts[0], paths[0], metadata, **split)
    feature_names = [str(j) for j in range(parts[0][0].shape[1])]
    return Dataset(name, Split(*parts[0]), Split(*parts[1]), label_names, feature_names, str(folder), metadata=metadata)


def seeded_split(
    part: tuple[Any, sp.csr_matrix], path: Path, metadata: dict[str, Any], test_fraction: float, split_seed: int
) -> tuple[list[tuple[Any, sp.csr_matrix]], dict[str, Any]]:
    """Train/test parts of a dataset shipped without a split: a seeded random permutation of the rows."""
    X, Y = part
    n = X.shape[0]
    if n < 2:
        raise DataFormatError(path, f"{n} data row(s); a train/test split needs at least 2")
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    order = np.random.default_rng(split_seed).permutation(n)
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    note = (
        f"{path.name} ships no train/test split: made a seeded one (test_fraction={test_fraction}, "
        f"split_seed={split_seed}): {len(train_rows)} train / {len(test_rows)} test rows"
    )
    metadata = dict(
        metadata,
        notes=metadata["notes"] + [note],
        split={"source": path.name, "test_fraction": test_fraction, "split_seed": split_seed},
    )
    return [(X[train_rows], Y[train_rows]), (X[test_rows], Y[test_rows])], metadata


def _plan(name: str, path: Path, split: dict) -> tuple[list[Path], dict[str, Any], Callable[[], Dataset]]:
    """(source files, options, builder) for a dataset folder or file of any supported kind."""
    if path.is_file():
        folder = path.parent
        if path.suffix.lower() == ".arff":
            xml = _xml_for(folder, path)
            files = [path] + ([xml] if xml else [])
            return (
                files,
                {"kind": "mulan" if xml else "meka", "split": split},
                lambda: _build_arff(name, folder, [path], xml, split),
            )
        if path.suffix.lower() in _TEXT_SUFFIXES:
            return [path], {"kind": "text", "split": split}, lambda: _build_text(name, folder, [path], split)
        raise DataNotFoundError(
            f"{path}: unsupported file type; expected .arff or a text file ({', '.join(_TEXT_SUFFIXES)})"
        )
    folder = path
    sgml = sorted(folder.glob("reut2-*.sgm"))
    if sgml:
        from labelchain.envs.data import reuters

        options = dict(reuters.TFIDF_OPTIONS)
        return sgml, {"kind": "reuters", "tfidf": options}, lambda: _named(reuters.load_reuters(folder, options), name)
    if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
        files = [folder / "train.txt", folder / "test.txt"]
        return files, {"kind": "text"}, lambda: _build_text(name, folder, files, None)
    if any(folder.glob("*.arff")):
        arffs = _arff_files(folder)
        xml = _xml_for(folder, arffs[0] if len(arffs) == 1 else None)
        made = split if len(arffs) == 1 else None
        options = {"kind": "mulan" if xml else "meka", "split": made}
        return arffs + ([xml] if xml else []), options, lambda: _build_arff(name, folder, arffs, xml, made)
    raise DataNotFoundError(
        f"{folder}: no dataset files found; expected reut2-*.sgm, train.txt + test.txt, "
        "*-train.arff + *-test.arff (+ one MULAN *.xml), or one ARFF to split"
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
    test_fraction: float = 0.25,
    split_seed: int = 0,
) -> Dataset:
    """Load a named dataset or a dataset folder or file (see the module docstring).

    `cache_dir` defaults to `envs.data.cache.default_cache_dir()`. A damaged cache entry is rebuilt
    (with a warning naming it); an unwritable cache folder only costs the cache (one warning).
    `test_fraction` and `split_seed` shape the split of a dataset shipped without one (and are part
    of its cache key). `split_index` (0..9) replaces the shipped train/test split by one of the 10
    random splits in the folder's `clprnn-splits/` (Delicious), which number rows of train+test from 1.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    name, path = resolve(name_or_path, data_dir)
    with _readable_files():
        return _load(name, path, cache, cache_dir, split_index, test_fraction, split_seed)


@contextmanager
def _readable_files() -> Iterator[None]:
    """A dataset file that is a directory or unreadable is a one-line `DataFormatError` naming it
    (was a raw IsADirectoryError / PermissionError traceback from deep in a reader)."""
    try:
        yield
    except (IsADirectoryError, PermissionError, NotADirectoryError) as err:
        what = "is a directory, expected a file" if isinstance(err, IsADirectoryError) else "cannot be read"
        raise DataFormatError(err.filename or "dataset", f"{what} ({err.strerror})") from None


def _load(
    name: str,
    path: Path,
    cache: bool,
    cache_dir: str | Path | None,
    split_index: int | None,
    test_fraction: float,
    split_seed: int,
) -> Dataset:
    """`load_dataset` once the name is resolved."""
    files, options, build = _plan(name, path, {"test_fraction": test_fraction, "split_seed": split_seed})
    dataset = None
    entry = None
    if cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        key = f"{name}-{cache_key(LOADER_VERSION, options, files)}"
        entry = root / key
        dataset, problem = load_cached(entry, key)
        if problem is not None:
            log.warning("dataset cache entry %s is damaged (%s); rebuilding it", entry, problem)
    if dataset is None:
        dataset = build()
        if entry is not None:
            try:
                save_dataset(dataset, entry, key)
            except OSError as err:
                log.warning(
                    "could not write the dataset cache at %s (%s); loaded without caching "
                    "(set LABELCHAIN_CACHE to a writable folder)",
                    entry,
                    err.strerror or err,
                )
    for note in dataset.metadata.get("notes", []):
        log.warning("%s: %s", name, note)
    if split_index is not None:
        dataset = resplit(dataset, path, split_index)
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
        raise DataFormatError(
            ts[0],
            f"split {split_index} is not a partition of the {n_total} rows of train+test together with {tr[0].name}",
        )
    parts = [dataset.train.X, dataset.test.X]
    X: np.ndarray | sp.csr_matrix = (
        np.vstack(parts) if isinstance(parts[0], np.ndarray) else sp.vstack(parts, format="csr")
    )
    Y = sp.vstack([dataset.train.Y, dataset.test.Y], format="csr")
    both = Split(X, Y)
    return Dataset(
        f"{dataset.name}-split{split_index}",
        both.subset(rows[0]),
        both.subset(rows[1]),
        dataset.label_names,
        dataset.feature_names,
        dataset.source,
        dataset.metadata,
    )


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
    order = np.argsort(rows, kind="stable")
    repeats = np.flatnonzero(np.diff(rows[order]) == 0)
    if repeats.size:  # np.intersect1d would hide it: one document twice in a split, another in neither
        entry = int(order[repeats + 1].min())  # the first entry that repeats an earlier one
        raise DataFormatError(
            path,
            f"row {rows[entry]} is listed twice (again as entry {entry + 1} of the column); expected each row once",
            field=f"column {split_index}",
        )
    return rows - 1


def source_files(name_or_path: str | Path, data_dir: str | Path | None = None) -> tuple[Path, list[Path]]:
    """The resolved dataset folder or file and the source files a load reads (what a train_rl run
    records, by content hash, to check on --resume that it still trains on the same data)."""
    name, path = resolve(name_or_path, data_dir)
    return path, _plan(name, path, {"test_fraction": 0.25, "split_seed": 0})[0]

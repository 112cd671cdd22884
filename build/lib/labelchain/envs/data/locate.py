"""Where a dataset's files are: data folders, dataset names and user paths.

The data directory is looked for, in order, in the `data_dir` argument (`--data-dir`), the
LABELCHAIN_DATA environment variable and `<repo root>/../shared/data`; the first that holds the
dataset wins. A `data_dir` or LABELCHAIN_DATA naming a folder that does not exist is an error, not a
silent fall-back to the default data.

Names: the nine built-in ones (`DATASET_NAMES`) live at fixed places (`mulan/<name>/`,
`reuters21578/`). Any other plain name is looked up as `mulan/<name>/`, `meka/<name>/`,
`xc/<name>/` or `<name>/` of each data directory, so a public MULAN, MEKA or Extreme
Classification dataset dropped into the data folder is usable by name.
"""

from __future__ import annotations

import os
from pathlib import Path

from labelchain.envs.data.errors import DataNotFoundError

DATASET_NAMES: tuple[str, ...] = (
    "emotions",
    "scene",
    "yeast",
    "medical",
    "enron",
    "reuters21578",
    "bibtex",
    "corel5k",
    "delicious",
)
BUILT_IN_FOLDERS = {name: Path("mulan") / name for name in DATASET_NAMES} | {"reuters21578": Path("reuters21578")}
USER_FOLDERS = ("mulan", "meka", "xc", "")  # where a name outside DATASET_NAMES is looked up
SOURCES = (
    "MULAN datasets: https://github.com/tsoumakas/mulan (data/multi-label), mirrored on "
    "https://mulan.sourceforge.net/datasets-mlc.html; Reuters-21578 Distribution 1.0: "
    "https://archive.ics.uci.edu/dataset/137/reuters+21578+text+categorization+collection"
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir_candidates(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """(folder, where the folder came from) in lookup order; a named folder must exist."""
    places = []
    if data_dir is not None:
        places.append((Path(data_dir).expanduser(), "data_dir argument / --data-dir"))
    env = os.environ.get("LABELCHAIN_DATA")
    if env:
        places.append((Path(env).expanduser(), "LABELCHAIN_DATA"))
    for folder, origin in places:
        if not folder.is_dir():
            raise DataNotFoundError(f"data folder {folder} (from {origin}) does not exist or is not a folder")
    places.append((REPO_ROOT.parent / "shared" / "data", "default <repo root>/../shared/data"))
    return places


def _is_plain_name(text: str) -> bool:
    return bool(text) and Path(text).name == text and text not in (".", "..") and not text.startswith("~")


def dataset_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """Folder holding the named dataset's files; DataNotFoundError lists every place looked at."""
    if not _is_plain_name(name):
        raise ValueError(f"dataset name {name!r} must be a plain name (no path separators); pass a Path for a path")
    subfolders = [BUILT_IN_FOLDERS[name]] if name in BUILT_IN_FOLDERS else [Path(s) / name for s in USER_FOLDERS]
    looked = []
    for root, origin in data_dir_candidates(data_dir):
        for sub in subfolders:
            folder = root / sub
            if folder.is_dir() and any(folder.iterdir()):
                return folder
            looked.append(f"  {folder} ({origin})")
    kind = "a built-in name" if name in BUILT_IN_FOLDERS else "not one of the built-in names"
    raise DataNotFoundError(
        f"dataset {name!r} ({kind}) not found; looked in:\n"
        + "\n".join(looked)
        + f"\nBuilt-in names: {', '.join(DATASET_NAMES)}. Get the files from {SOURCES}, unpack them as "
        "<data dir>/mulan/<name>/ (or meka/, xc/), and pass data_dir=... or set LABELCHAIN_DATA; "
        "or pass the dataset's folder or file as a path."
    )


def resolve(name_or_path: str | Path, data_dir: str | Path | None = None) -> tuple[str, Path]:
    """(dataset name, folder or file) for a name or a path.

    A built-in name always means the built-in dataset (write "./emotions" for a folder of that
    name). Another plain name is looked up in the data directories first, then as a relative path.
    """
    if isinstance(name_or_path, str) and _is_plain_name(name_or_path):
        try:
            return name_or_path, dataset_folder(name_or_path, data_dir)
        except DataNotFoundError:
            if name_or_path in BUILT_IN_FOLDERS or not Path(name_or_path).exists():
                raise
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"{path}: no such file or folder; pass a dataset name "
            f"({', '.join(DATASET_NAMES)}, or a folder name under the data folder) or a path"
        )
    resolved = path.resolve()
    name = resolved.name if resolved.is_dir() else resolved.stem
    return name, path

"""A user's dataset that is not in the shared data, written in a public format from emotions rows.

`write_mulan(folder, ...)` makes `<name>-train.arff`, `<name>-test.arff` and `<name>.xml` (MULAN:
numeric features first, then one {0,1} attribute per label, the label names in the XML), as a
user would drop them in; used by the any-dataset benchmark test and the docs' example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labelchain.envs.data.dataset import Split
from labelchain.envs.data.loading import load_dataset


def _arff(name: str, split: Split, n_features: int, label_names: list[str]) -> str:
    lines = [f"@relation {name}"]
    lines += [f"@attribute f{j} numeric" for j in range(n_features)]
    lines += [f"@attribute {label} {{0,1}}" for label in label_names]
    lines.append("@data")
    X, Y = np.asarray(split.X)[:, :n_features], split.Y.toarray().astype(int)
    for x, y in zip(X, Y):
        lines.append(",".join([*(f"{v:.6g}" for v in x), *(str(v) for v in y)]))
    return "\n".join(lines) + "\n"


def write_mulan(
    folder: Path, name: str = "mymusic", n_train: int = 150, n_test: int = 80, n_features: int = 20
) -> Path:
    """The first rows and features of emotions as a MULAN dataset folder; returns the folder."""
    source = load_dataset("emotions")
    labels = [f"mood{i}" for i in range(source.n_labels)]
    folder.mkdir(parents=True, exist_ok=True)
    train, test = source.train.subset(np.arange(n_train)), source.test.subset(np.arange(n_test))
    (folder / f"{name}-train.arff").write_text(_arff(name, train, n_features, labels))
    (folder / f"{name}-test.arff").write_text(_arff(name, test, n_features, labels))
    xml = "".join(f'<label name="{label}"></label>' for label in labels)
    (folder / f"{name}.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">{xml}</labels>\n'
    )
    return folder

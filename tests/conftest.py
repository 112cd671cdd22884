"""Shared test set-up: one thread (2 shared cores make two threads many times slower), the
hand-made `tiny_dataset`, the `emotions` benchmark (loaded once), and the `needs_data` marker.
The tiny train_rl run of the end-to-end tests is `tiny_runs.tiny_train_rl_args`; tests that take
longer than ~5 s (learning, SB3, notebooks, Ray, fuzzing) carry `@pytest.mark.slow`.

Tests that read the shared benchmark data (emotions, yeast, ...) carry `@pytest.mark.needs_data`
(or `pytestmark = pytest.mark.needs_data` for a whole module); when the data folder is missing they
are skipped with a reason naming where it was looked for, instead of failing with a loader error.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from labelchain.envs.data.dataset import Dataset, Split  # noqa: E402

torch.set_num_threads(1)

# Where the loaders look when no data_dir is given (envs.data.loading): LABELCHAIN_DATA, then ../shared/data.
DATA_DIR = Path(os.environ.get("LABELCHAIN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def data_dir() -> Path:
    """The shared benchmark data folder (for tests that pass a dataset by its path)."""
    return DATA_DIR


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_data: reads the shared benchmark data (skipped when it is missing)")
    config.addinivalue_line(
        "markers", 'slow: learning, SB3, notebooks, Ray, fuzzing, builds: over ~5 s (deselect with -m "not slow")'
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (DATA_DIR / "mulan").is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared benchmark data not found at {DATA_DIR} (set LABELCHAIN_DATA)")
    for item in items:
        if item.get_closest_marker("needs_data") is not None:
            item.add_marker(skip)


def _split(features: list[list[float]], labels: list[list[int]], n_labels: int) -> Split:
    Y = sp.lil_matrix((len(labels), n_labels), dtype=bool)
    for row, ids in enumerate(labels):
        for label in ids:
            Y[row, label] = True
    return Split(np.array(features, dtype=np.float32), Y.tocsr())


@pytest.fixture(scope="session")
def emotions() -> Dataset:
    """The emotions benchmark (391 train / 202 test documents, 6 labels), loaded once per session.

    Shared by every test module: treat it as read-only (copy before changing a split)."""
    from labelchain.envs.data.loading import load_dataset

    return load_dataset("emotions")


@pytest.fixture
def tiny_dataset() -> Dataset:
    """4 labels; train docs with gold sets {0,2}, {1}, {}, {0,1,3}; test docs {3}, {0,2}."""
    train = _split([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], [[0, 2], [1], [], [0, 1, 3]], n_labels=4)
    test = _split([[0, 0, 1], [1, 0, 0]], [[3], [0, 2]], n_labels=4)
    return Dataset("tiny", train, test, ["a", "b", "c", "d"], ["x", "y", "z"])


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_pytest_tmp(tmp_path_factory):
    """SB3's learn() makes a log folder per call (in /tmp by default); keep them in pytest's tmp."""
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))


@pytest.fixture(autouse=True, scope="session")
def _dataset_cache_in_tmp(tmp_path_factory):
    """Parsed datasets go to pytest's tmp, never the user's cache (subprocesses inherit the variable)."""
    os.environ["LABELCHAIN_CACHE"] = str(tmp_path_factory.mktemp("labelchain-cache"))

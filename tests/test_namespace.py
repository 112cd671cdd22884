"""The installed namespace: `labelchain.*` only, light metric imports, LabelChain-v0 registered either import order."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter from outside the repository (only the install is importable)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_metrics_import_pulls_in_neither_gymnasium_nor_torch():
    out = run_python("import sys, labelchain.envs.metrics; print('gymnasium' in sys.modules, 'torch' in sys.modules)")
    assert out == "False False"


@pytest.mark.parametrize(
    "imports", ["import labelchain; import gymnasium as gym", "import gymnasium as gym; import labelchain"]
)
def test_env_id_registered_whichever_is_imported_first(imports):
    assert run_python(f"{imports}; print('LabelChain-v0' in gym.registry)") == "True"


def test_the_old_top_level_names_are_not_installed():
    out = run_python(
        "import importlib.util as u; print([n for n in ('envs', 'agents', 'experiments') if u.find_spec(n)])"
    )
    assert out == "[]"


@pytest.mark.slow
def test_the_wheel_holds_only_the_labelchain_package(tmp_path):
    source = tmp_path / "src"  # setuptools builds in-tree (build/): build a copy, never the checkout
    skip = shutil.ignore_patterns(".git", ".venv", "build", "runs", ".cache", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, source, symlinks=True, ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("labelchain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"labelchain", "labelchain-0.1.0.dist-info"}
    assert {"labelchain/envs/metrics.py", "labelchain/agents/policy.py", "labelchain/experiments/train_rl.py"} <= set(
        names
    )


def test_repo_root_constants_name_the_checkout():
    from labelchain.envs.data.locate import REPO_ROOT as data_root
    from labelchain.experiments.run.common import REPO_ROOT

    assert REPO_ROOT == data_root == REPO and (REPO / "pyproject.toml").is_file()

"""The analysis notebooks run headless, top to bottom, on tiny runs made here (emotions); nbtools' numbers.

The notebooks are executed through `analysis/nbtools.execute_notebook` in a kernel started from this
very interpreter (so CI's `.venv/bin/python -m pytest` runs them in the venv), with their parameters
pointed at the test's own results files, run folders and figure folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from analysis import nbtools
from labelchain.experiments import ablations, compare_guidance, compare_orderings

pytestmark = pytest.mark.slow  # notebooks executed headless: minutes in all; `pytest -m 'not slow'` skips them

REPO = Path(__file__).resolve().parents[1]

NOTEBOOKS = ("orderings", "learned_orders", "reward_curves", "ablations", "guidance")


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    """Two seeds of a 4-learner grid, of 3 ablation variants and of a none/bcl guidance grid on emotions, tiny budgets."""
    tmp = tmp_path_factory.mktemp("analysis")
    compare_orderings.main(
        compare_orderings.Args(
            datasets=["emotions"],
            seeds=[0, 1],
            learners=["freq2rare", "rare2freq", "rearrange", "combined"],
            peers=[],
            updates=6,
            hidden_size=16,
            eval_every=3,
            checkpoint_every=3,
            runs_dir=str(tmp / "runs" / "compare"),
            out_dir=str(tmp / "results"),
            progress=False,
        )
    )
    ablations.main(
        ablations.Args(
            dataset="emotions",
            seeds=[0, 1],
            variants=["default", "scratch", "entropy_0"],
            warm_updates=6,
            updates=4,
            hidden_size=16,
            eval_every=2,
            runs_dir=str(tmp / "runs" / "ablations"),
            out_dir=str(tmp / "results"),
            progress=False,
        )
    )
    compare_guidance.main(
        compare_guidance.Args(
            datasets=["emotions"],
            seeds=[0, 1],
            guidance=["none", "bcl"],
            clusters=3,
            rearrange_epochs=1,
            combined_epochs=1,
            hidden_size=16,
            out_dir=str(tmp / "results"),
        )
    )
    return tmp


def parameters(name: str, tmp: Path) -> dict:
    figures = str(tmp / "figures" / name)
    return {
        "orderings": {"RESULTS": str(tmp / "results" / "orderings.json"), "FIGURE_DIR": figures},
        "learned_orders": {
            "RUNS_DIR": str(tmp / "runs" / "compare"),
            "DATASET": "emotions",
            "REFERENCES": ["freq2rare", "rearrange"],
            "N_EXAMPLES": 3,
            "FIGURE_DIR": figures,
        },
        "reward_curves": {"RUNS_DIR": str(tmp / "runs" / "compare"), "DATASET": "emotions", "FIGURE_DIR": figures},
        "ablations": {"RESULTS": str(tmp / "results" / "ablations.json"), "FIGURE_DIR": figures},
        "guidance": {
            "RESULTS": str(tmp / "results" / "guidance.json"),
            "FIGURE_DIR": figures,
            "VARIANTS": ["", "bcl+c3"],
        },
    }[name]


@pytest.mark.needs_data  # the notebooks read runs trained here on emotions
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_headless_top_to_bottom(name, tiny_results):
    notebook = nbtools.execute_notebook(REPO / "analysis" / f"{name}.ipynb", parameters(name, tiny_results))
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"{name}: expected inline figures"
    assert list((tiny_results / "figures" / name).glob("*.png")), f"{name}: no PNG written to FIGURE_DIR"


def test_kernel_is_this_interpreter(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    path = tmp_path / "which.ipynb"
    nbformat.write(notebook, str(path))
    executed = nbtools.execute_notebook(path)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


def test_committed_notebooks_carry_figures_and_parameters():
    for name in NOTEBOOKS:
        notebook = nbformat.read(REPO / "analysis" / f"{name}.ipynb", as_version=4)
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells), name
        assert any(
            "image/png" in o.get("data", {})
            for cell in notebook.cells
            if cell.cell_type == "code"
            for o in cell.outputs
        ), f"{name}.ipynb: committed without figures"


# ----------------------------------------------------------------------------- nbtools on hand-made data
def test_pooled_kendall_tau_counts_concordant_minus_discordant():
    assert nbtools.pooled_kendall_tau([np.array([0, 1, 2]), np.array([0, 1, 2])]) == (1.0, 3)
    assert nbtools.pooled_kendall_tau([np.array([0, 1]), np.array([1, 0])]) == (-1.0, 1)
    # pair {0,1}: two documents 0->1, one 1->0: 1 concordant, 2 discordant; pair {1,2} seen once: no comparison
    tau, comparisons = nbtools.pooled_kendall_tau(
        [np.array([0, 1]), np.array([1, 0]), np.array([0, 1, 2]), np.array([5])]
    )
    assert comparisons == 3 and tau == pytest.approx(-1 / 3)
    assert np.isnan(nbtools.pooled_kendall_tau([np.array([3])])[0])


def test_positions_and_precision_by_position():
    chains = [np.array([2, 0]), np.array([0]), np.array([1, 2, 3])]
    gold = [np.array([0, 2]), np.array([1]), np.array([3])]
    position, count = nbtools.emission_positions(chains, 5)
    np.testing.assert_allclose(position[:4], [1.5, 1.0, 1.5, 3.0])
    assert np.isnan(position[4]) and count.tolist() == [2, 1, 2, 1, 0]
    table = nbtools.precision_by_position(chains, gold)
    assert table.emitted.tolist() == [3, 2, 1] and table.correct.tolist() == [1, 1, 1]
    np.testing.assert_allclose(table.precision, [1 / 3, 0.5, 1.0])


def test_mean_std_table_and_paired_gaps():
    frame = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "method": ["best_fixed", "best_fixed", "combined", "combined"],
            "seed": [0, 1, 0, 1],
            "P@1": [0.5, 0.7, 0.6, 0.7],
        }
    )
    table = nbtools.mean_std_table(frame, ["method"], ["P@1"])
    assert table.loc["best_fixed", "P@1"] == "60.00 ± 14.14" and table.loc["combined", "n"] == 2
    gaps = nbtools.paired_gaps(frame, "best_fixed", ["combined"], ["P@1"]).iloc[0]
    assert gaps["mean"] == pytest.approx(5.0) and gaps["std"] == pytest.approx(np.std([10.0, 0.0], ddof=1))
    assert gaps["relative_percent"] == pytest.approx(100 * (0.65 - 0.6) / 0.6) and gaps["n"] == 2


def test_run_folders_newest_per_seed(tmp_path):
    for name in ("emo__compare__0__100", "emo__compare__0__200", "emo__compare__1__150", "other__compare__0__1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({}))
        (tmp_path / name / "metrics.json").write_text(json.dumps({}))
    (tmp_path / "emo__compare__1__300").mkdir()
    (tmp_path / "emo__compare__1__300" / "config.json").write_text("{}")  # unfinished
    found = [p.name for p in nbtools.find_runs(tmp_path, "emo")]
    assert found == ["emo__compare__0__200", "emo__compare__1__150"]
    assert len(nbtools.find_runs(tmp_path, "emo", finished=False, newest_per_seed=False)) == 4

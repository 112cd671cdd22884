"""labelchain.envs.rank_tests and experiments.cd_diagram against Demšar (JMLR 2006)'s worked examples and hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from labelchain.envs.rank_tests import complete_block, friedman, holm, nemenyi_cd, nemenyi_q, ranks, wilcoxon_holm
from labelchain.experiments.reports.cd_diagram import cliques

# Demšar 2006, Table 6 (= the AUCs of Table 2 plus two more variants): 14 datasets x 4 C4.5 variants
METHODS = ("C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf")
AUC = {
    "adult (sample)": (0.763, 0.768, 0.771, 0.798),
    "breast cancer": (0.599, 0.591, 0.590, 0.569),
    "breast cancer wisconsin": (0.954, 0.971, 0.968, 0.967),
    "cmc": (0.628, 0.661, 0.654, 0.657),
    "ionosphere": (0.882, 0.888, 0.886, 0.898),
    "iris": (0.936, 0.931, 0.916, 0.931),
    "liver disorders": (0.661, 0.668, 0.609, 0.685),
    "lung cancer": (0.583, 0.583, 0.563, 0.625),
    "lymphography": (0.775, 0.838, 0.866, 0.875),
    "mushroom": (1.000, 1.000, 1.000, 1.000),
    "primary tumor": (0.940, 0.962, 0.965, 0.962),
    "rheum": (0.619, 0.666, 0.614, 0.669),
    "voting": (0.972, 0.981, 0.975, 0.974),
    "wine": (0.957, 0.978, 0.946, 0.970),
}
TABLE = {d: dict(zip(METHODS, v, strict=True)) for d, v in AUC.items()}


def test_friedman_matches_demsar_section_3_2_2():
    result = friedman(TABLE)
    assert result.methods == list(METHODS)
    assert np.round(result.mean_ranks, 3).tolist() == [3.143, 2.000, 2.893, 1.964]  # his average ranks
    assert round(result.chi2, 2) == 9.28  # chi2_F = 9.28
    assert round(result.f, 2) == 3.69  # F_F = 3.69 > F(3, 39) critical 2.85 at alpha 0.05
    assert result.p_f < 0.05 and result.p_chi2 < 0.05
    assert result.n_datasets == 14 and result.dropped == {}


def test_nemenyi_q_and_cd_match_demsar_table_5():
    assert round(nemenyi_q(4), 3) == 2.569
    # his table has three decimals (2.343 for k = 3 where the quantile is 2.3437)
    assert [nemenyi_q(k) for k in (2, 3, 8, 10)] == pytest.approx([1.960, 2.343, 3.031, 3.164], abs=1e-3)
    assert round(nemenyi_cd(4, 14), 2) == 1.25  # CD = 2.569 sqrt(4*5 / (6*14))


def test_wilcoxon_matches_demsar_section_3_1_3():
    """C4.5+m vs C4.5: R+ = 93, R- = 12 (zero differences split), T = 12 < 21 (critical, N=14): significant."""
    (test,) = wilcoxon_holm(TABLE, [("C4.5+m", "C4.5")])
    assert (test.r_plus, test.r_minus, test.n_datasets) == (93.0, 12.0, 14)
    assert (test.wins, test.losses) == (10, 2)
    assert test.p < 0.05 and test.p_holm == test.p  # a family of one: Holm changes nothing


def test_holm_by_hand():
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])


def test_wilcoxon_exact_p_on_a_hand_case_and_lower_is_better():
    # 5 datasets, a wins on all with distinct gaps: exact two-sided p = 2 / 2^5
    table = {f"d{i}": {"a": 0.5 + 0.01 * i, "b": 0.5} for i in range(1, 6)}
    (test,) = wilcoxon_holm(table, [("a", "b")])
    assert (test.r_plus, test.r_minus, test.p) == (15.0, 0.0, pytest.approx(2 / 32))
    (loss,) = wilcoxon_holm(table, [("a", "b")], higher_is_better=False)  # e.g. hamming loss
    assert (loss.wins, loss.losses, loss.r_plus) == (0, 5, 0.0)


def test_ranks_ties_and_direction():
    assert ranks(np.array([[0.3, 0.3, 0.1]])).tolist() == [[1.5, 1.5, 3.0]]
    assert ranks(np.array([[0.3, 0.3, 0.1]]), higher_is_better=False).tolist() == [[2.5, 2.5, 1.0]]


def test_missing_methods_error_names_them_or_are_dropped():
    table = {"d1": {"a": 0.1, "b": 0.2, "c": 0.3}, "d2": {"a": 0.2, "b": float("nan")}, "d3": {"a": 0.3, "b": 0.1}}
    with pytest.raises(
        ValueError, match=r"^methods missing on some datasets: b \(missing on d2\); c \(missing on d2, d3\)"
    ):
        friedman(table)
    with pytest.raises(ValueError, match="needs >= 2 methods and >= 2 datasets, got 1 methods on 3 datasets"):
        friedman(table, missing="drop")
    block = complete_block(table, ["a", "b"], missing="drop")
    assert block.methods == ["a"] and block.dropped == {"b": ["d2"]}
    with pytest.raises(ValueError, match="wilcoxon: no dataset has both a and c"):
        wilcoxon_holm({"d2": table["d2"]}, [("a", "c")])
    (pair,) = wilcoxon_holm(table, [("a", "b")])  # a pair uses the datasets where both have values
    assert pair.n_datasets == 2


def test_cliques_by_hand():
    # ranks 1.0 1.2 2.0 3.5 with CD 1.0: {1.0, 1.2, 2.0} and {3.5} alone -> one run (0, 2)
    assert cliques([2.0, 1.0, 3.5, 1.2], 1.0) == [(0, 2)]
    assert cliques([1.0, 1.9, 2.8], 1.0) == [(0, 1), (1, 2)]
    assert cliques([1.0, 3.0], 1.0) == []


def test_cd_diagram_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from labelchain.experiments.reports.cd_diagram import draw

    result = friedman(TABLE)
    path = draw(result.methods, result.mean_ranks, nemenyi_cd(4, 14), "Demšar 2006, Table 6", tmp_path / "cd.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

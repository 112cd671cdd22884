"""prior.md's per-label (a, b) section (experiments/reports/prior_scale.py) on hand-made results; the
other sections' tests and the hand-made grids are in test_prior_report.py."""

import pytest
from test_prior_report import _file, _hand_made, _row

from labelchain.experiments.reports import prior as report
from labelchain.experiments.reports import prior_rows as merged

SECTION = "## One (a, b) or one per label (OvR prior)"


def _per_label(scale: str = "per_label") -> dict:
    """The per-label grid on d1 only: ensemble 0.63 / 0.64 against the shared pair's 0.60 / 0.62."""
    rows = [_row("d1", s, "ensemble", v, "ensemble") for s, v in ((0, 0.63), (1, 0.64))]
    payload = _file(rows, ["d1"], [0, 1])
    payload["args"]["prior_scale"] = scale
    return payload


def test_per_label_section_by_hand() -> None:
    prior, base = _hand_made()
    results = merged.combine(prior, None, base, None, None, _per_label())
    assert results["missing_cells"]["prior_perlabel"] == ["d2:0", "d2:1", "d4:0"]  # the OvR grid's other cells
    text = report.render_markdown(results)
    section = text[text.index(SECTION) : text.index("## Ablations")]
    # +0.03 and +0.02: mean +0.025, t(0.975, 1) * 0.0070711 / sqrt 2 = 0.063531 (no saved predictions: t)
    assert "| d1 | 2 | +2.50 [-3.85, +8.85] t |" in section
    assert "not finished yet (left out, not filled in): d2:0, d2:1, d4:0." in section
    assert "Per-label ahead on every metric (seed means): d1; behind on every metric: none." in section
    assert "Intervals wholly above 0: 0 (none); wholly below 0: 0 (none)." in section
    assert "| d1 | ensemble+prior-ovr+per_label | 2 | 63.50 |" in text  # beside the ablations' seed means


def test_per_label_absent_or_of_another_scale() -> None:
    prior, base = _hand_made()
    text = report.render_markdown(merged.combine(prior, None, base))
    assert SECTION + "\n\nNot run yet: no prior_perlabel results file." in text
    with pytest.raises(
        ValueError,
        match="^--per-label: that grid ran with --prior ovr_logistic, this input needs "
        "--prior ovr_logistic --prior-scale per_label$",
    ):
        merged.combine(prior, None, base, None, None, _per_label("shared"))
    per_label = _per_label()  # the per-label grid given as --prior: its rows would be named as the shared pair's
    with pytest.raises(ValueError, match="^--prior: that grid ran with --prior ovr_logistic --prior-scale per_label"):
        merged.combine(per_label, None, base)

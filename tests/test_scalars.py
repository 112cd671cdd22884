"""TensorBoard curves read back the one way both the training tests and the notebooks read them."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from analysis import nbtools
from helpers import read_scalars


def test_scripts_and_notebooks_read_the_same_curves(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path))
    for step, value in [(0, 0.5), (1, 0.25), (3, 2.0)]:
        writer.add_scalar("eval/P@1", value, step)
    writer.add_scalar("losses/rl", -1.0, 7)
    writer.close()
    assert read_scalars(tmp_path) == {"eval/P@1": [(0, 0.5), (1, 0.25), (3, 2.0)], "losses/rl": [(7, -1.0)]}
    frame = nbtools.event_scalars(tmp_path)
    assert sorted(zip(frame.tag, frame.step, frame.value)) == [
        ("eval/P@1", 0, 0.5),
        ("eval/P@1", 1, 0.25),
        ("eval/P@1", 3, 2.0),
        ("losses/rl", 7, -1.0),
    ]
    assert (frame.wall_time > 1e9).all()  # unix seconds, what the notebooks' elapsed time is built from


def test_notebooks_order_methods_as_the_report_does() -> None:
    methods = ["omikuji", "zeta", "combined", "freq2rare", "combined", "alpha"]
    assert nbtools.ordered(methods) == ["freq2rare", "combined", "omikuji", "alpha", "zeta"]

"""The one atomic-write helper: whole file or old file, readable by others (0644)."""

from __future__ import annotations

import stat

import pytest

from labelchain.envs.atomic import atomic_write, atomic_write_json, atomic_write_text


def test_written_files_are_0644_and_complete(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def explode(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_policy_and_checkpoint_files_are_0644(tmp_path):
    from labelchain.agents.policy import ChainPolicy
    from labelchain.experiments.run.folder import save_checkpoint

    ChainPolicy(4, 3, hidden_size=8).save(tmp_path / "policy")
    save_checkpoint(tmp_path / "checkpoint.pt", {"x": 1})
    for path in [*(tmp_path / "policy").iterdir(), tmp_path / "checkpoint.pt"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path

"""train_rl's second hardening round (issue 19): no code runs from a checkpoint or policy file, a run
is bound to its data and its checkpoints to their run, flags typed with --resume are never ignored,
every error (full disk included) ends in one line, printed commands are shell-quoted, and progress
output suits a log file."""

from __future__ import annotations

import errno
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from interrupted_run import interrupt_long_run
import torch

from labelchain.agents.policy import ChainPolicy
from labelchain.envs.progress import progress_bar
from labelchain.experiments.run import folder as runs
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.folder import (
    BatchSampler,
    CheckpointError,
    DiskFullError,
    RunAborted,
    load_checkpoint,
    load_policy,
    run_script,
    save_checkpoint,
)
from labelchain.experiments.train_rl import main
from labelchain.experiments.run.train_rl_args import Args, cli_args, resolve_args

TINY = Args(
    dataset="emotions",
    learners=["freq2rare"],
    ensemble=[],
    updates=6,
    batch_size=32,
    hidden_size=8,
    eval_every=3,
    checkpoint_every=2,
    progress=False,
)
SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "train_rl.py"


class Payload:
    """Unpickled by a full unpickler, this creates `marker`: what a crafted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"finished": False, "policy_config": {}, "best_policy": Payload(marker)}, path)
    return path


def one_line_error(code: object) -> str:
    """A script's SystemExit: one line starting with 'error:' (run_script's contract)."""
    assert isinstance(code, str), code
    assert code.startswith("error: ") and "\n" not in code and "Traceback" not in code, code
    return code


# ----------------------------------------------------------------------------- no data needed
def test_crafted_files_run_nothing_and_fail_in_one_line(tmp_path: Path):
    marker = tmp_path / "MARKER"
    path = crafted_checkpoint(tmp_path / "run" / "freq2rare" / "checkpoint.pt", marker)
    for load in (load_checkpoint, load_policy):
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value) and "refused: it asks to run exec" in str(info.value)
        assert "\n" not in str(info.value)
    folder = tmp_path / "policy"
    ChainPolicy(4, 3, hidden_size=8).save(folder)
    torch.save({"weight": Payload(marker)}, folder / "policy_weights.pt")
    with pytest.raises(ValueError, match="refused") as info:
        ChainPolicy.load(folder)
    assert str(folder / "policy_weights.pt") in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_checkpoints_hold_plain_data_and_old_numpy_ones_still_load(tmp_path: Path):
    sampler = BatchSampler(10, 4, seed=3)
    sampler.next()
    state = sampler.state_dict()
    assert isinstance(state["order"], list)  # no numpy in new checkpoints
    save_checkpoint(tmp_path / "new.pt", {"finished": False, "policy_config": {}, "best_policy": {}, "s": state})
    assert torch.load(tmp_path / "new.pt", weights_only=True)["s"] == state  # torch's own safe loader reads it
    old = {**state, "order": np.asarray(state["order"])}  # what checkpoints held before
    torch.save({"finished": False, "policy_config": {}, "best_policy": {}, "s": old}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")["s"]
    again = BatchSampler(10, 4, seed=99)
    again.load_state_dict(loaded)
    assert again.next().tolist() == sampler.next().tolist()


def test_truncated_garbage_and_foreign_checkpoints_are_one_line(tmp_path: Path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"finished": False, "policy_config": {}, "best_policy": {}})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    (tmp_path / "garbage.pt").write_bytes(b"hello" * 50)
    torch.save([1, 2], tmp_path / "list.pt")
    for name, expected in (
        ("cut.pt", "truncated or damaged"),
        ("garbage.pt", "truncated or damaged"),
        ("list.pt", "not a train_rl checkpoint"),
        ("missing.pt", "no checkpoint here"),
    ):
        with pytest.raises(CheckpointError, match=expected) as info:
            load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


def test_typed_flags_count_whatever_their_value():
    parsed = cli_args(["--updates", "500", "--no-progress"])
    assert parsed.updates == 500 == Args().updates
    from labelchain.experiments.run.common import given_fields

    assert given_fields(parsed) == {"updates", "progress"}
    assert given_fields(replace(TINY, updates=500)) >= {"dataset", "learners", "batch_size"}  # built in Python


def test_an_ensemble_of_untrained_learners_is_refused_before_training():
    with pytest.raises(ArgsError, match=r"--ensemble rearrange: rearrange not trained in this run"):
        resolve_args(replace(TINY, ensemble=["rearrange"]))
    # typed with the default's values: still refused (it used to be dropped without a word)
    with pytest.raises(ArgsError, match=r"rearrange, combined not trained"):
        resolve_args(cli_args(["--learners", "freq2rare", "--ensemble", "rearrange", "combined"]))
    assert resolve_args(cli_args(["--learners", "freq2rare"])).ensemble == ["rearrange", "combined"]  # default: kept


def test_bad_numbers_and_flags_end_in_one_line():
    for argv, expected in (
        (["--seed", str(2**64)], "--seed must be >= 0 and <= 4294967295"),
        (["--hidden-size", "0"], "--hidden-size must be >= 1"),
    ):
        with pytest.raises(SystemExit) as info:
            run_script(lambda argv=argv: resolve_args(cli_args(argv)))
        assert expected in one_line_error(info.value.code)
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--hidden-size", "1e12"], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
    assert "--hidden-size: invalid int value: '1e12'" in process.stderr


def test_progress_in_a_log_file_is_plain_lines_not_redraws():
    log = io.StringIO()  # not a terminal
    bar = progress_bar(True, stream=log, total=5000, desc="freq2rare")
    for _ in range(5000):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and 1 <= text.count("\n") <= 3, text
    assert text.splitlines()[-1].startswith("freq2rare: 100%")
    quiet = io.StringIO()
    bar = progress_bar(False, stream=quiet, total=3)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def test_wrong_types_in_a_run_config_are_one_line(tmp_path: Path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"args": {"updates": "many"}, "derived": {}}))
    with pytest.raises(SystemExit) as info:
        run_script(lambda: main(Args(resume=str(tmp_path))))
    assert "config.json: field 'updates' should be <class 'int'>, got 'many'" in one_line_error(info.value.code)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as info:
        run_script(lambda: main(Args(resume=str(tmp_path))))
    assert "not a train_rl config" in one_line_error(info.value.code)


# ----------------------------------------------------------------------------- with data
def copy_emotions(data_dir: Path, target: Path) -> Path:
    shutil.copytree(data_dir / "mulan" / "emotions", target)
    return target


def flip_last_label(folder: Path) -> None:
    """Same shape, other labels: the last training row's last label flipped."""
    path = folder / "emotions-train.arff"
    lines = path.read_text().rstrip("\n").split("\n")
    lines[-1] = lines[-1][:-1] + ("0" if lines[-1].endswith("1") else "1")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.needs_data
def test_crafted_files_on_resume_warm_start_and_overlap_from_run_nothing(tmp_path: Path):
    marker = tmp_path / "MARKER"
    bad = crafted_checkpoint(tmp_path / "bad" / "checkpoint.pt", marker)
    run_dir = main(replace(TINY, runs_dir=str(tmp_path / "runs"), stop_after_updates=2))
    crafted_checkpoint(run_dir / "freq2rare" / "checkpoint.pt", marker)
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--resume", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert process.stderr.strip().count("\n") == 0 and "refused: it asks to run exec" in process.stderr
    for changes, flag in (
        ({"learners": ["reinforce"], "warm_start": str(bad)}, "--warm-start"),
        ({"guidance": "bcl", "clusters": 2, "overlap_from": str(bad)}, "--overlap-from"),
    ):
        with pytest.raises(SystemExit) as info:
            run_script(lambda changes=changes: main(replace(TINY, runs_dir=str(tmp_path / "runs2"), **changes)))
        message = one_line_error(info.value.code)
        assert message.startswith(f"error: {flag} {bad}") and "refused" in message
    assert not marker.exists()


@pytest.mark.needs_data
def test_resume_refuses_other_data_and_accepts_the_same_data_moved(tmp_path: Path, data_dir: Path, monkeypatch):
    first = copy_emotions(data_dir, tmp_path / "a" / "emotions")
    monkeypatch.chdir(tmp_path / "a")
    run_dir = main(replace(TINY, dataset="emotions/", runs_dir=str(tmp_path / "runs"), stop_after_updates=2))
    # the relative --dataset resolved from another folder holding other data of the same shape
    flip_last_label(copy_emotions(data_dir, tmp_path / "b" / "emotions"))
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(ArgsError, match=r"not the data this run started on .*emotions-train.arff") as info:
        main(Args(resume=str(run_dir)))
    assert str(tmp_path / "b" / "emotions") in str(info.value) and str(first) in str(info.value)
    # a size change is named
    (tmp_path / "b" / "emotions" / "emotions-train.arff").write_text(
        "\n".join((first / "emotions-train.arff").read_text().rstrip("\n").split("\n")[:-1]) + "\n"
    )
    with pytest.raises(ArgsError, match=r"train has 351 documents \(run: 352\)"):
        main(Args(resume=str(run_dir)))
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 2  # nothing ran
    # the same files elsewhere are the same data
    shutil.rmtree(tmp_path / "b" / "emotions")
    copy_emotions(data_dir, tmp_path / "b" / "emotions")
    main(Args(resume=str(run_dir), stop_after_updates=1))
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 3


@pytest.mark.needs_data
def test_resume_refuses_a_changed_data_dir_and_a_swapped_checkpoint(tmp_path: Path, data_dir: Path):
    other = tmp_path / "other"
    flip_last_label(copy_emotions(data_dir, other / "mulan" / "emotions"))
    run_dir = main(replace(TINY, runs_dir=str(tmp_path / "runs"), stop_after_updates=2))
    with pytest.raises(ArgsError, match=r"not the data this run started on"):
        main(Args(resume=str(run_dir), data_dir=str(other)))
    seed1 = main(replace(TINY, seed=1, runs_dir=str(tmp_path / "runs"), stop_after_updates=2))
    shutil.copy(seed1 / "freq2rare" / "checkpoint.pt", run_dir / "freq2rare" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: this checkpoint belongs to another run") as info:
        main(Args(resume=str(run_dir)))
    assert seed1.name in str(info.value) and "\n" not in str(info.value)
    derived = load_checkpoint(seed1 / "freq2rare" / "checkpoint.pt")["run"]
    assert derived["run_id"] == seed1.name and derived["seed"] == 1 and len(derived["data_sha256"]) == 64


@pytest.mark.needs_data
def test_a_typed_flag_at_its_default_value_is_refused_on_resume(tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=2))
    with pytest.raises(ArgsError, match=r"--updates \(run: 6, given: 500\)"):
        main(cli_args(["--resume", str(run_dir), "--updates", "500"]))  # 500 is the default
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 2
    main(cli_args(["--resume", str(run_dir), "--no-progress", "--stop-after-updates", "1"]))  # safe: applied
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 3


class FullAfter:
    """A file handle that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        size = len(memoryview(data).cast("B"))
        if size > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return self.handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.needs_data
@pytest.mark.parametrize("target", ["checkpoint.pt", "policy_weights.pt", "metrics.json", "events"])
def test_a_full_disk_anywhere_is_the_one_line_resume_message(tmp_path: Path, monkeypatch, target: str):
    runs_dir = tmp_path / "my runs"
    if target == "events":
        from tensorboard.summary.writer import record_writer

        def no_room(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(record_writer.RecordWriter, "write", no_room)
    else:
        real_fdopen = os.fdopen

        def fdopen(fd, *args, **kwargs):
            handle = real_fdopen(fd, *args, **kwargs)
            name = os.readlink(f"/proc/self/fd/{fd}")
            return FullAfter(handle, 100) if Path(name).name.startswith(f".{target}.") else handle

        monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(SystemExit) as info:
        run_script(lambda: main(replace(TINY, runs_dir=str(runs_dir))))
    message = one_line_error(info.value.code)
    (run_dir,) = runs_dir.iterdir()
    assert "disk is full" in message and message.endswith(
        "resume with: " + shlex.join(["python", "experiments/train_rl.py", "--resume", str(run_dir)])
    )


@pytest.mark.needs_data
def test_a_second_ctrl_c_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=2))
    real = runs.atomic_write

    def interrupted(path, write):
        real(path, lambda handle: (handle.write(b"half"), (_ for _ in ()).throw(KeyboardInterrupt())))

    monkeypatch.setattr(runs, "atomic_write", interrupted)
    with pytest.raises(RunAborted, match="last complete checkpoints are kept; resume with"):
        main(Args(resume=str(run_dir)))
    monkeypatch.undo()
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 2
    main(Args(resume=str(run_dir)))
    assert (run_dir / "metrics.json").is_file()


@pytest.mark.needs_data
def test_printed_resume_command_is_shell_quoted(tmp_path: Path, capsys):
    runs_dir = tmp_path / "with space"
    run_dir = main(replace(TINY, runs_dir=str(runs_dir), group_name="x;touch pwned", stop_after_updates=2))
    out = capsys.readouterr().out
    assert f"resume with: python experiments/train_rl.py --resume {shlex.quote(str(run_dir))}" in out
    assert shlex.split(out.strip().splitlines()[-1].split(": ", 1)[1])[-1] == str(run_dir)


def test_run_script_turns_each_user_error_into_one_line(tmp_path: Path, capsys):
    from labelchain.envs.data.errors import DataNotFoundError

    def fail(error: BaseException):
        def body():
            raise error

        return body

    for error, expected in (
        (
            DataNotFoundError("dataset 'x' not found; looked in:\n  /a\n  /b"),
            "error: dataset 'x' not found; looked in: /a /b",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "orderings.json")),
            "error: the disk is full (",
        ),
        (DiskFullError(errno.ENOSPC, "x: the disk is full (ENOSPC); resume with: y"), "error: x: the disk is full"),
    ):
        with pytest.raises(SystemExit) as info:
            run_script(fail(error))
        assert one_line_error(info.value.code).startswith(expected)
    with pytest.raises(SystemExit) as info:
        run_script(fail(RunAborted("aborted; resume with: z")))
    assert info.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted: aborted; resume with: z"
    with pytest.raises(OSError, match="Permission"):  # not a user error: not hidden
        run_script(fail(OSError(errno.EACCES, "Permission denied")))


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_second_ctrl_c_from_the_shell_ends_in_one_line(tmp_path: Path):
    """The second signal lands while the update or the checkpoint runs (abort: 'interrupted: ...') or
    after the clean stop (its 'resume with' line stays the last): one line, rc 130, either way."""
    returncode, output = interrupt_long_run(tmp_path, signal.SIGINT, times=2)
    assert returncode == 130 and "Traceback" not in output, output
    (run_dir,) = tmp_path.iterdir()
    last = output.strip().splitlines()[-1]
    assert last.startswith(("interrupted: ", "resume with: ")) and last.endswith(f"--resume {run_dir}"), output


def test_a_typed_flag_wins_over_the_preset_whatever_its_value():
    from labelchain.experiments.run.presets import PRESETS

    paper = PRESETS["paper"]
    assert paper.run.updates != Args().updates
    typed = resolve_args(cli_args(["--preset", "paper", "--updates", str(Args().updates)]))
    assert typed.updates == Args().updates  # typed at the default's value: kept (it used to be replaced)
    assert typed.hidden_size == paper.policy.hidden_size  # not typed: the preset's
    assert resolve_args(cli_args(["--preset", "paper"])).updates == paper.run.updates


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"learners": ["freq2rare"], "warm_start": "/nowhere/policy"}, "--warm-start /nowhere/policy: no learner"),
        ({"learners": ["freq2rare"], "rearrange_warm_start": "/nowhere"}, "--rearrange-warm-start /nowhere: this run"),
    ],
)
def test_a_warm_start_no_learner_uses_is_refused_not_ignored(tmp_path: Path, changes: dict, words: str):
    """Issue 19 re-probe: `--learners freq2rare --warm-start <crafted, garbage or missing file>` ran
    with rc 0, the typed flag silently ignored (only the RL learners / rearrange read it)."""
    with pytest.raises(ArgsError, match=words) as info:
        main(replace(TINY, runs_dir=str(tmp_path / "runs"), **changes))
    assert "\n" not in str(info.value) and not (tmp_path / "runs").exists()


@pytest.mark.needs_data
@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_an_unwritable_file_in_a_resumed_run_is_one_line(tmp_path: Path, monkeypatch, code: int):
    """Issue 19 re-probe: a run folder that is writable but whose checkpoint is not (a colleague's
    files in a shared folder, a read-only mount) ended in a raw PermissionError traceback on resume."""
    run_dir = main(replace(TINY, runs_dir=str(tmp_path / "my runs"), stop_after_updates=2))
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".checkpoint.pt."):
            os.close(fd)
            raise OSError(code, os.strerror(code), str(run_dir / "freq2rare" / "checkpoint.pt"))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(SystemExit) as info:
        run_script(lambda: main(cli_args(["--resume", str(run_dir), "--no-progress"])))
    message = one_line_error(info.value.code)
    assert message.startswith(f"error: cannot write {run_dir / 'freq2rare' / 'checkpoint.pt'} ({os.strerror(code)})")
    assert message.endswith(f"resume with: python experiments/train_rl.py --resume {shlex.quote(str(run_dir))}")

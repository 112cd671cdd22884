"""experiments/train_rl.py end to end on emotions with tiny budgets: files, curves, resume, seeding."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import tiny_train_rl_args
from interrupted_run import deterministic_part, interrupt_long_run

from labelchain.agents.policy import ChainPolicy
from helpers import read_scalars

from labelchain.experiments.run.folder import BatchSampler, GracefulInterrupt, load_checkpoint
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.train_rl import main
from labelchain.experiments.run.train_rl_args import Args, group_label

UPDATES = 6
TINY = tiny_train_rl_args(updates=UPDATES, eval_every=3)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    return main(replace(TINY, runs_dir=str(tmp_path_factory.mktemp("reference"))))


@pytest.mark.needs_data
@pytest.mark.slow
def test_run_folder_holds_config_metrics_checkpoints_and_policies(reference_run: Path):
    assert reference_run.name.startswith("emotions__freq2rare+rearrange+combined__0__")
    config = json.loads((reference_run / "config.json").read_text())
    assert config["args"]["learners"] == TINY.learners and config["args"]["updates"] == UPDATES
    assert config["derived"]["n_val"] == round(391 * 0.1) and config["derived"]["n_test"] == 202
    assert config["derived"]["warm_start"] == {"combined": str(reference_run / "rearrange" / "policy")}
    report = json.loads((reference_run / "metrics.json").read_text())
    assert set(report["learners"]) == set(TINY.learners)
    for name, result in report["learners"].items():
        assert result["updates"] == UPDATES and result["docs"] == UPDATES * 32
        assert result["best_update"] in (3, 6)  # never the starting point
        assert 0.0 <= result["test"]["P@1"] <= 1.0 and set(result["test"]) >= {"nDCG@3", "micro_f1"}
        checkpoint = load_checkpoint(reference_run / name / "checkpoint.pt")
        assert checkpoint["finished"] and checkpoint["progress"]["update"] == UPDATES
        ChainPolicy.load(reference_run / name / "policy")
    assert report["best_fixed"]["learner"] == "freq2rare"
    assert report["best_fixed"]["test"] == report["learners"]["freq2rare"]["test"]
    assert report["ensemble"]["members"] == ["rearrange", "combined"]


@pytest.mark.needs_data
def test_tensorboard_curves_per_learner(reference_run: Path):
    steps = list(range(1, UPDATES + 1))
    for name in TINY.learners:
        scalars = read_scalars(reference_run / name)
        assert [s for s, _ in scalars["charts/episodic_return"]] == steps
        assert [s for s, _ in scalars["perf/steps_per_sec"]] == steps
        assert all(v > 0 for _, v in scalars["perf/steps_per_sec"])
        assert [s for s, _ in scalars["losses/teacher_forcing"]] == steps
        for metric in ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "micro_f1", "example_f1"):
            assert [s for s, _ in scalars[f"eval/{metric}"]] == [0, 3, 6]
    assert [s for s, _ in read_scalars(reference_run / "combined")["losses/rl"]] == steps
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reference_run / "combined"))
    events.Reload()
    table = events.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert table.startswith("|param|value|") and "|learner|combined|" in table and "|updates|6|" in table


@pytest.mark.needs_data
def test_best_validation_scores_match_the_curves(reference_run: Path):
    """The kept policy is the best validation point, and combined starts exactly where rearrange ended."""
    report = json.loads((reference_run / "metrics.json").read_text())
    for name in TINY.learners:
        curve = dict(read_scalars(reference_run / name)["eval/nDCG@3"])
        best = report["learners"][name]
        assert best["val"]["nDCG@3"] == pytest.approx(max(curve[3], curve[6]), abs=1e-6)
        assert curve[best["best_update"]] == pytest.approx(best["val"]["nDCG@3"], abs=1e-6)
    combined_start = read_scalars(reference_run / "combined")["eval/P@1"][0]
    assert combined_start[0] == 0
    assert combined_start[1] == pytest.approx(report["learners"]["rearrange"]["val"]["P@1"], abs=1e-6)


@pytest.mark.needs_data
@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(reference_run: Path, tmp_path: Path):
    again = main(replace(TINY, runs_dir=str(tmp_path / "a")))
    assert deterministic_part(again) == deterministic_part(reference_run)
    other = main(replace(TINY, runs_dir=str(tmp_path / "b"), seed=1, learners=["freq2rare"], ensemble=[]))
    assert (
        deterministic_part(other)["learners"]["freq2rare"]["test"]
        != deterministic_part(reference_run)["learners"]["freq2rare"]["test"]
    )


@pytest.mark.needs_data
@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_metrics(reference_run: Path, tmp_path: Path):
    run_dir = main(replace(TINY, runs_dir=str(tmp_path), stop_after_updates=4))  # stops inside freq2rare
    assert not (run_dir / "metrics.json").exists()
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["progress"]["update"] == 4
    main(Args(resume=str(run_dir), stop_after_updates=2, progress=False))  # freq2rare ends exactly
    assert load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")["finished"]
    assert not (run_dir / "rearrange").exists()
    main(Args(resume=str(run_dir), stop_after_updates=3, progress=False))  # rearrange stops at 3
    assert load_checkpoint(run_dir / "rearrange" / "checkpoint.pt")["progress"]["update"] == 3
    assert not (run_dir / "combined").exists()
    main(Args(resume=str(run_dir), progress=False))
    assert deterministic_part(run_dir) == deterministic_part(reference_run)
    for name in TINY.learners:  # curves continue without duplicated steps
        scalars = read_scalars(run_dir / name)
        assert [s for s, _ in scalars["charts/episodic_return"]] == list(range(1, UPDATES + 1))
        assert [s for s, _ in scalars["eval/P@1"]] == [0, 3, 6]
        assert scalars["charts/episodic_return"] == read_scalars(reference_run / name)["charts/episodic_return"]


@pytest.mark.needs_data
@pytest.mark.slow
def test_resume_purges_steps_logged_after_the_last_checkpoint(tmp_path: Path):
    """A crash after checkpoint 2 but after logging steps 3-4: the resumed curve has each step once."""
    args = replace(TINY, runs_dir=str(tmp_path), learners=["rearrange"], ensemble=[], checkpoint_every=2)
    run_dir = main(replace(args, stop_after_updates=4))
    checkpoint_4 = (run_dir / "rearrange" / "checkpoint.pt").read_bytes()
    main(replace(args, resume=str(run_dir), stop_after_updates=2))  # logs 5, 6; checkpoints at 6
    # Pretend the crash happened right after step 6 was logged but before its checkpoint: roll back to 4.
    (run_dir / "rearrange" / "checkpoint.pt").write_bytes(checkpoint_4)
    main(replace(args, resume=str(run_dir)))
    scalars = read_scalars(run_dir / "rearrange")
    assert [s for s, _ in scalars["charts/episodic_return"]] == list(range(1, UPDATES + 1))
    assert [s for s, _ in scalars["eval/P@1"]] == [0, 3, 6]


@pytest.mark.needs_data
@pytest.mark.slow
def test_ctrl_c_checkpoints_and_says_how_to_resume(tmp_path: Path):
    returncode, output = interrupt_long_run(tmp_path, signal.SIGINT)
    assert returncode == 130, output
    (run_dir,) = tmp_path.iterdir()
    assert f"--resume {run_dir}" in output
    checkpoint = load_checkpoint(run_dir / "freq2rare" / "checkpoint.pt")
    assert not checkpoint["finished"] and 0 < checkpoint["progress"]["update"] < 100000
    assert checkpoint["learner"]["n_updates"] == checkpoint["progress"]["update"]


def test_bad_arguments_are_reported_plainly(tmp_path: Path):
    with pytest.raises(ArgsError, match="learners"):
        main(replace(TINY, learners=["freq2rare", "nope"], runs_dir=str(tmp_path)))
    with pytest.raises(ArgsError, match="select-metric"):
        main(replace(TINY, select_metric="P@2", runs_dir=str(tmp_path)))
    with pytest.raises(ArgsError, match="config.json"):
        main(Args(resume=str(tmp_path)))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ArgsError, match="not a train_rl config"):
        main(Args(resume=str(tmp_path)))
    assert not any(p.name.startswith("emotions__") for p in tmp_path.iterdir())


def test_group_label_names_the_learners():
    assert group_label(replace(TINY, learners=["ppo"])) == "ppo"
    assert group_label(replace(TINY, learners=["rearrange", "ppo"])) == "rearrange+ppo"
    assert group_label(Args()) == "6learners"
    assert group_label(replace(TINY, group_name="sweep")) == "sweep"


def test_batch_sampler_state_round_trip():
    sampler = BatchSampler(10, 4, seed=3)
    for _ in range(3):
        sampler.next()
    clone = BatchSampler(10, 4, seed=99)
    clone.load_state_dict(sampler.state_dict())
    ahead = [sampler.next() for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(ahead, [clone.next() for _ in range(5)]))
    assert all(len(b) == 4 and np.all(np.diff(b) > 0) for b in ahead)
    with pytest.raises(ValueError, match="batch"):
        BatchSampler(10, 5, seed=0).load_state_dict(sampler.state_dict())


def test_first_ctrl_c_sets_a_flag_second_raises():
    with GracefulInterrupt() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_unreadable_checkpoint_names_the_file(tmp_path: Path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_text("garbage")
    with pytest.raises(ValueError, match=str(bad)):
        load_checkpoint(bad)


@pytest.mark.needs_data
@pytest.mark.slow
def test_rearrange_can_start_from_a_fixed_order_policy(reference_run: Path, tmp_path: Path):
    """--rearrange-warm-start: rearrange's update-0 validation is the fixed-order policy's best point."""
    report = json.loads((reference_run / "metrics.json").read_text())
    source = reference_run / "freq2rare" / "policy"
    run = main(
        replace(
            TINY,
            learners=["rearrange"],
            ensemble=[],
            greedy_rearrangement=True,
            rearrange_warm_start=str(source),
            runs_dir=str(tmp_path),
        )
    )
    start = read_scalars(run / "rearrange")["eval/P@1"][0]
    assert start[0] == 0
    assert start[1] == pytest.approx(report["learners"]["freq2rare"]["val"]["P@1"], abs=1e-6)
    config = json.loads((run / "config.json").read_text())["derived"]
    assert config["learner_config"]["rearrange"]["greedy_rearrangement"] is True
    with pytest.raises(ArgsError, match="rearrange-warm-start"):
        main(
            replace(
                TINY, learners=["rearrange"], rearrange_warm_start=str(tmp_path / "missing"), runs_dir=str(tmp_path)
            )
        )


# ----------------------------------------------------------------------------- --preset paper
@pytest.mark.needs_data
@pytest.mark.slow
def test_paper_preset_end_to_end_with_two_checkpoints_patience_and_a_floor(tmp_path: Path):
    """The paper preset on emotions at a tiny budget: explicit flags win over the preset, the rest
    (weight decay, label embeddings, input dropout, aux head, patience) come from it."""
    args = replace(TINY, preset="paper", runs_dir=str(tmp_path), updates=12, patience=1, device="cpu")
    run_dir = main(args)
    config = json.loads((run_dir / "config.json").read_text())["args"]
    assert config["hidden_size"] == 16 and config["weight_decay"] == 1e-4 and config["eval_every"] == 3
    report = json.loads((run_dir / "metrics.json").read_text())
    for name in TINY.learners:
        state = load_checkpoint(run_dir / name / "checkpoint.pt")
        assert state["policy_config"]["label_embed_size"] == 256 and state["policy_config"]["input_dropout"] == 0.2
        assert "best_set_policy" in state and state["finished"]
        progress = state["progress"]
        if progress["stopped_early"]:  # patience 1: one validation without any improvement ends it
            assert progress["update"] - max(progress["best_update"], progress["best_set_update"]) >= 3
        else:
            assert progress["update"] == 12
    assert report["floor"]["method"] == "label_frequency"
    assert 0.0 < report["floor"]["test"]["P@1"] < report["best_fixed"]["test"]["P@1"]


def test_out_of_patience_counts_validations_since_either_checkpoint():
    from types import SimpleNamespace

    from labelchain.experiments.run.learner_run import LearnerRun, Progress, Schedule

    def stop(update: int, best: int, best_set: int, patience: int | None = 2) -> bool:
        run = SimpleNamespace(
            schedule=Schedule(100, 10, 10, "nDCG@3", patience=patience, set_metric="example_f1"),
            progress=Progress(update=update, best_update=best, best_set_update=best_set),
        )
        return LearnerRun.out_of_patience(run)

    assert not stop(30, 10, 20) and stop(40, 10, 20) and stop(40, 20, -1)
    assert not stop(40, 30, 10) and not stop(90, 10, 10, patience=None) and not stop(40, -1, -1)

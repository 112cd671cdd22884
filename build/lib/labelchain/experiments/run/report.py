"""The end of a train_rl run: every learner's best policy on test, the best fixed ordering, the ensemble.

Kept apart from the training loop so that the report's rules (which checkpoint, which fixed ordering
counts as best, which members the ensemble fuses) read in one place.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from labelchain.agents.decoding import predict
from labelchain.agents.ensemble import Ensemble
from labelchain.agents.learners import FIXED_ORDERINGS
from labelchain.agents.peers import tune_peer
from labelchain.envs.metrics import HEADLINE, RANKING_NAMES, evaluate, is_better
from labelchain.envs.tail_metrics import few_shot_f1
from labelchain.experiments.run.learner_run import PREDICT_BATCH, Progress, RunData
from labelchain.experiments.run.folder import CHECKPOINT_FILE, load_checkpoint, policy_from_state

TABLE_METRICS = HEADLINE + ("micro_f1", "example_f1")


def best_fixed_ordering(val_scores: dict[str, float], metric: str) -> str:
    """The fixed ordering every claim is measured against: the best validation `metric`.

    `val_scores` maps learner -> its validation score, in training order. Ties go to the earlier
    learner; a NaN score (a failed validation) never wins over a number, in any position.
    """
    if not val_scores:
        raise ValueError("no fixed ordering to choose from")
    best = None
    for name, score in val_scores.items():
        if math.isnan(score):
            continue
        if best is None or is_better(metric, score, val_scores[best]):
            best = name
    return next(iter(val_scores)) if best is None else best


def few_shot_report(data: RunData, Y_pred) -> dict[str, float | None]:
    """XLGen's few-shot buckets of the test sets (envs.tail_metrics); an empty bucket's F1s are null."""
    result = few_shot_f1(data.test.Y, Y_pred, data.label_freq)
    return {key: None if math.isnan(value) else value for key, value in result.items()}


def final_evaluation(
    data: RunData, run_dir: Path, dataset: str, learners: Sequence[str], ensemble: Sequence[str], select_metric: str
) -> dict[str, Any]:
    """Test metrics of every learner's best policy, of the best fixed ordering, and of the ensemble."""
    results: dict[str, dict[str, Any]] = {}
    outputs = {}
    for name in learners:
        state = load_checkpoint(run_dir / name / CHECKPOINT_FILE)
        policy = policy_from_state(state["policy_config"], state["best_policy"])
        started = time.perf_counter()
        val_out = predict(policy, data.val.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
        test_out = predict(policy, data.test.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
        if "best_set_policy" in state:  # two checkpoints: label sets from the best-example-F1 weights
            set_policy = policy_from_state(state["policy_config"], state["best_set_policy"])
            val_out = (
                predict(set_policy, data.val.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)[0],
                val_out[1],
            )
            test_out = (
                predict(set_policy, data.test.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)[0],
                test_out[1],
            )
        outputs[name] = (val_out, test_out)
        progress = Progress.from_dict(state["progress"])
        results[name] = {
            "test": evaluate(
                data.test.Y, scores=test_out[1], Y_pred=test_out[0], label_freq=data.label_freq, n_train=len(data.train)
            ),
            "few_shot": few_shot_report(data, test_out[0]),
            "val": progress.best_metrics,
            "best_update": progress.best_update,
            "updates": progress.update,
            "label_steps": progress.label_steps,
            "docs": progress.docs,
            "timing": {
                "train_seconds": progress.train_seconds,
                "eval_seconds": progress.eval_seconds,
                "test_seconds": time.perf_counter() - started,
            },
        }
    report: dict[str, Any] = {"dataset": dataset, "select_metric": select_metric, "learners": results}
    floor = tune_peer("label_frequency", data.label_train, data.val)  # the floor every table shows
    Y_floor, floor_scores = floor.predict(data.test.X)
    report["floor"] = {
        "method": "label_frequency",
        "set_rule": floor.set_rule.to_dict(),
        "test": evaluate(data.test.Y, scores=floor_scores, Y_pred=Y_floor, label_freq=data.label_freq),
    }
    fixed = [name for name in learners if name in FIXED_ORDERINGS]
    if fixed:
        best = best_fixed_ordering(
            {name: results[name]["val"].get(select_metric, math.nan) for name in fixed}, select_metric
        )
        report["best_fixed"] = {"learner": best, "val": results[best]["val"], "test": results[best]["test"]}
    members = [name for name in ensemble if name in learners]
    if len(members) >= 2:
        ranking_metric = select_metric if select_metric in RANKING_NAMES else "nDCG@3"
        fused = Ensemble().fit([outputs[name][0] for name in members], data.val.Y, ranking_metric=ranking_metric)
        Y_pred, scores = fused.predict([outputs[name][1] for name in members])
        report["ensemble"] = {
            "members": members,
            "test": evaluate(
                data.test.Y, scores=scores, Y_pred=Y_pred, label_freq=data.label_freq, n_train=len(data.train)
            ),
            "few_shot": few_shot_report(data, Y_pred),
            **fused.describe(),
        }
    return report


def results_table(report: dict[str, Any]) -> str:
    rows = [(name, result["test"]) for name, result in report["learners"].items()]
    if "best_fixed" in report:
        rows.append((f"best fixed ({report['best_fixed']['learner']})", report["best_fixed"]["test"]))
    if "ensemble" in report:
        rows.append(("ensemble(" + "+".join(report["ensemble"]["members"]) + ")", report["ensemble"]["test"]))
    if "floor" in report:
        rows.append(("label frequency (floor)", report["floor"]["test"]))
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{'test':<{width}}" + "".join(f"{m:>11}" for m in TABLE_METRICS)]
    lines += [f"{name:<{width}}" + "".join(f"{metrics[m]:>11.4f}" for m in TABLE_METRICS) for name, metrics in rows]
    return "\n".join(lines)

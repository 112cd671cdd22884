"""The end of a train_rl run: every learner's best policy on test, the best fixed ordering, the ensemble.

Kept apart from the training loop so that the report's rules (which checkpoint, which fixed ordering
counts as best, which members the ensemble fuses) read in one place.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agents.decoding import predict
from agents.ensemble import Ensemble
from agents.learners import FIXED_ORDERINGS
from envs.metrics import HEADLINE, RANKING_NAMES, evaluate, is_better
from runs import CHECKPOINT_FILE, load_checkpoint, policy_from_state

TABLE_METRICS = HEADLINE + ("micro_f1", "example_f1")
PREDICT_BATCH = 512


def final_evaluation(args: Any, data: Any, run_dir: Path) -> dict:
    """Test metrics of every learner's best policy, of the best fixed ordering, and of the ensemble."""
    results, outputs = {}, {}
    for name in args.learners:
        state = load_checkpoint(run_dir / name / CHECKPOINT_FILE)
        policy = policy_from_state(state["policy_config"], state["best_policy"])
        started = time.perf_counter()
        val_out = predict(policy, data.val.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
        test_out = predict(policy, data.test.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
        outputs[name] = (val_out, test_out)
        progress = state["progress"]
        results[name] = {
            "test": evaluate(data.test.Y, scores=test_out[1], Y_pred=test_out[0], label_freq=data.label_freq),
            "val": progress["best_metrics"], "best_update": progress["best_update"],
            "updates": progress["update"], "label_steps": progress["label_steps"], "docs": progress["docs"],
            "timing": {"train_seconds": progress["train_seconds"], "eval_seconds": progress["eval_seconds"],
                       "test_seconds": time.perf_counter() - started},
        }
    report: dict = {"dataset": args.dataset, "select_metric": args.select_metric, "learners": results}
    fixed = [name for name in args.learners if name in FIXED_ORDERINGS]
    if fixed:
        best = fixed[0]
        for name in fixed[1:]:
            if is_better(args.select_metric, results[name]["val"][args.select_metric], results[best]["val"][args.select_metric]):
                best = name
        report["best_fixed"] = {"learner": best, "val": results[best]["val"], "test": results[best]["test"]}
    members = [name for name in args.ensemble if name in args.learners]
    if len(members) >= 2:
        ranking_metric = args.select_metric if args.select_metric in RANKING_NAMES else "nDCG@3"
        ensemble = Ensemble().fit([outputs[name][0] for name in members], data.val.Y, ranking_metric=ranking_metric)
        Y_pred, scores = ensemble.predict([outputs[name][1] for name in members])
        report["ensemble"] = {
            "members": members,
            "test": evaluate(data.test.Y, scores=scores, Y_pred=Y_pred, label_freq=data.label_freq),
            **ensemble.describe(),
        }
    return report


def results_table(report: dict) -> str:
    rows = [(name, result["test"]) for name, result in report["learners"].items()]
    if "best_fixed" in report:
        rows.append((f"best fixed ({report['best_fixed']['learner']})", report["best_fixed"]["test"]))
    if "ensemble" in report:
        rows.append(("ensemble(" + "+".join(report["ensemble"]["members"]) + ")", report["ensemble"]["test"]))
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{'test':<{width}}" + "".join(f"{m:>11}" for m in TABLE_METRICS)]
    lines += [f"{name:<{width}}" + "".join(f"{metrics[m]:>11.4f}" for m in TABLE_METRICS) for name, metrics in rows]
    return "\n".join(lines)

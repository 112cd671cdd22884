"""The end of a train_rl run: every learner's best policy on test, the best fixed ordering, the ensemble.

Kept apart from the training loop so that the report's rules (which checkpoint, which fixed ordering
counts as best, which members the ensemble fuses) read in one place.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from labelchain.agents.chain_rules import choose_rules
from labelchain.agents.decoding import predict
from labelchain.agents.rule_outputs import decode_chain_outputs
from labelchain.agents.ensemble import Ensemble
from labelchain.agents.learners import FIXED_ORDERINGS
from labelchain.agents.peers import tune_peer
from labelchain.envs.data.dataset import Split
from labelchain.envs.metrics import HEADLINE, RANKING_NAMES, evaluate, is_better
from labelchain.envs.predictions import DEFAULT_TOP_K, PREDICTIONS_DIR, from_outputs, save_predictions
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
    data: RunData,
    run_dir: Path,
    dataset: str,
    learners: Sequence[str],
    ensemble: Sequence[str],
    select_metric: str,
    seed: int | None = None,
    predictions_k: int = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """Test metrics of every learner's best policy, of the best fixed ordering, and of the ensemble.

    Each one's test predictions go to `run_dir/predictions/<name>.npz` (envs.predictions), from the
    same scores and sets its metrics are computed from."""
    results: dict[str, dict[str, Any]] = {}
    saved = PredictionSaver(data, run_dir / PREDICTIONS_DIR, dataset, seed, predictions_k)
    outputs = {}
    for name in learners:
        state = load_checkpoint(run_dir / name / CHECKPOINT_FILE)
        policy = policy_from_state(state["policy_config"], state["best_policy"])
        started = time.perf_counter()
        rules = None
        if policy.prior_mode != "none":  # a prior chain: its ranking and set rules chosen on validation
            rules, val_out, test_out = chosen_rule_outputs(policy, data, seed)
        else:
            val_out = predict(policy, data.val.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
            test_out = predict(policy, data.test.X, batch_size=PREDICT_BATCH, max_steps=data.max_steps)
        if "best_set_policy" in state and rules is None:  # two checkpoints: label sets from the best-example-F1 weights
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
        saved.save(name, test_out[1], test_out[0], with_psp=True)
        progress = Progress.from_dict(state["progress"])
        results[name] = {
            "test": evaluate(
                data.test.Y, scores=test_out[1], Y_pred=test_out[0], label_freq=data.label_freq, n_train=len(data.train)
            ),
            "few_shot": few_shot_report(data, test_out[0]),
            **({"rules": rules} if rules is not None else {}),
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
    saved.save("floor", floor_scores, Y_floor, with_psp=False)
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
        saved.save("best_fixed", outputs[best][1][1], outputs[best][1][0], with_psp=True, extra={"chosen": best})
    members = [name for name in ensemble if name in learners]
    if len(members) >= 2:
        ranking_metric = select_metric if select_metric in RANKING_NAMES else "nDCG@3"
        fused = Ensemble().fit([outputs[name][0] for name in members], data.val.Y, ranking_metric=ranking_metric)
        Y_pred, scores = fused.predict([outputs[name][1] for name in members])
        saved.save("ensemble", scores, Y_pred, with_psp=True, extra={"members": members})
        report["ensemble"] = {
            "members": members,
            "test": evaluate(
                data.test.Y, scores=scores, Y_pred=Y_pred, label_freq=data.label_freq, n_train=len(data.train)
            ),
            "few_shot": few_shot_report(data, Y_pred),
            **fused.describe(),
        }
    return report


def chosen_rule_outputs(policy, data: RunData, seed: int | None) -> tuple[dict[str, Any], Any, Any]:
    """A prior chain's (rules chosen on validation, validation outputs, test outputs) under those rules
    (`rules_chosen_on`)."""
    rules, val_out, (test_out,) = rules_chosen_on(policy, data.val, [data.test.X], max_steps=data.max_steps, seed=seed)
    return rules, val_out, test_out


def rules_chosen_on(
    policy, val: Split, others: Sequence[Any], *, max_steps: int | None, seed: int | None
) -> tuple[dict[str, Any], Any, list[Any]]:
    """A prior chain's ranking and set rules chosen on `val` (agents.chain_rules): which ranking
    (emission, first step, set-then-prior, sampled shares) and which set (the chain's own at a STOP
    offset, or a tuned threshold / top-k on the chain's scores); returns (the rules, `val`'s outputs
    and each of `others`' feature rows' outputs under them). The peer's own rules are scored but not
    eligible: the peer alone is its own row. train_rl's report and the strength grid both use it."""

    def outputs(X):
        return decode_chain_outputs(policy, X, max_steps=max_steps, seed=seed or 0, batch_size=PREDICT_BATCH)

    decoded = outputs(val.X)
    chosen = choose_rules(decoded, val.Y, peer_eligible=False)
    return chosen.to_dict(), chosen.apply(decoded), [chosen.apply(outputs(X)) for X in others]


class PredictionSaver:
    """Writes one method's test predictions of a run, with what its row's metrics were computed with."""

    def __init__(self, data: RunData, folder: Path, dataset: str, seed: int | None, top_k: int) -> None:
        self.data, self.folder, self.dataset, self.seed, self.top_k = data, folder, dataset, seed, top_k

    def save(self, method: str, scores, Y_pred, with_psp: bool, extra: dict[str, Any] | None = None) -> Path:
        """`with_psp`: the row's PSP@k used n_train (learners, ensemble; the floor has no PSP)."""
        data = self.data
        pred = from_outputs(
            method,
            data.test.Y,
            scores,
            Y_pred,
            dataset=self.dataset,
            dataset_hash=data.dataset_hash,
            seed=self.seed,
            label_freq=data.label_freq,
            n_train=len(data.train) if with_psp else None,
            top_k=self.top_k,
            extra=extra,
        )
        return save_predictions(self.folder / f"{method}.npz", pred)


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

"""The rows prior.md is rendered from: three compare_orderings results files merged into one payload
(`combine`), the validation-chosen prior-chain row, and the bootstrap pairs the report shows (`attach`).

Kept apart from experiments/reports/prior.py, which renders that payload and reads nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labelchain.envs.metrics import HEADLINE
from labelchain.experiments.reports.claim_stats import Loader, attach_bootstrap
from labelchain.experiments.reports.orderings import METHOD_ORDER

GOAL_METRICS = (*HEADLINE, "example_f1", "subset_accuracy")
PEERS = ("ovr_logistic", "omikuji")
PRIOR, NOHISTORY = "+prior", "+prior-nohistory"
FIXED = "ensemble" + PRIOR  # the prior-chain system fixed in advance (fused on validation)
VAL_BEST = "val_best" + PRIOR
CHAIN_ALONE, ECC = "ensemble", "ecc"
LEARNED = ("rearrange", "combined", "ensemble")  # learned orders vs best_fixed under the prior, (e)
GOAL_DATASETS, NOHISTORY_GOAL, LEARNED_GOAL = 7, 6, 35  # the bars: of 9 datasets, of 45 cells
SUBSET_ZERO = 0.001  # subset accuracy left out where every compared method's seed mean is below this
ABLATION_METRICS = ("P@1", "example_f1")
MATCH, DISAGREE = 1e-9, ", predictions disagree"


def _strip(row: Mapping[str, Any], suffix: str = "") -> dict[str, Any]:
    """A row without its config blob (it stays in the source file), its method renamed."""
    return {k: v for k, v in row.items() if k != "config"} | {"method": row["method"] + suffix}


def _expected(results: Mapping[str, Any]) -> list[tuple[str, int]]:
    args = results.get("args") or {}
    return [(d, int(s)) for d in args.get("datasets", []) for s in args.get("seeds", [])]


def _cells(results: Mapping[str, Any], done: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Finished cells with their wall time (from the file's "cells" section, when it has one)."""
    info = results.get("cells", {})
    return [
        {"dataset": d, "seed": s, "wall_s": info.get(f"{d}:{s}", {}).get("cell_wall_time_s")} for d, s in sorted(done)
    ]


def validation_choice(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """Among one cell's fixed and learned rows carrying validation metrics, the best on `metric`
    (ties to report order); None when no row carries one."""
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    candidates = [r for r in rows if r.get("kind") in ("fixed", "dynamic") and metric in (r.get("val") or {})]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: (-r["val"][metric], rank.get(r["method"], len(rank)), r["method"]))
    return {k: best[k] for k in ("dataset", "seed", "metrics", "val")} | {
        "method": VAL_BEST,
        "kind": "val_best",
        "chosen": best["method"] + PRIOR,
        "wall_time_s": best.get("wall_time_s"),
    }


def combine(prior: Mapping[str, Any], nohistory: Mapping[str, Any] | None, base: Mapping[str, Any]) -> dict[str, Any]:
    """One payload from the three files (module docs); rows outside the prior grid's finished cells are dropped."""
    chain_rows = [r for r in prior.get("rows", []) if r.get("kind") != "peer"]
    done = {(r["dataset"], r["seed"]) for r in chain_rows}
    select = (prior.get("args") or {}).get("select_metric", "nDCG@3")
    rows = [_strip(r, PRIOR) for r in chain_rows]
    choices = [
        validation_choice([r for r in chain_rows if (r["dataset"], r["seed"]) == c], select) for c in sorted(done)
    ]
    rows += [c for c in choices if c is not None]
    nohistory = nohistory or {}
    nohist_rows = [r for r in nohistory.get("rows", []) if r.get("kind") != "peer"]
    rows += [_strip(r, NOHISTORY) for r in nohist_rows if (r["dataset"], r["seed"]) in done]
    rows += [_strip(r) for r in base.get("rows", []) if (r["dataset"], r["seed"]) in done]
    nohist_done = {(r["dataset"], r["seed"]) for r in nohist_rows}
    return {
        "rows": rows,
        "datasets": list(dict.fromkeys([d for d, _ in _expected(prior)] + [d for d, _ in sorted(done)])),
        "select_metric": select,
        "prior_peer": (prior.get("args") or {}).get("prior"),
        "validation_choice": bool(done) and all(c is not None for c in choices),
        "cells": {"prior": _cells(prior, done), "prior_nohistory": _cells(nohistory, nohist_done & done)},
        "missing_cells": {
            "prior": [f"{d}:{s}" for d, s in _expected(prior) if (d, s) not in done],
            "prior_nohistory": [f"{d}:{s}" for d, s in _expected(nohistory) if (d, s) not in nohist_done],
        },
        "sources": {
            "prior": prior.get("command"),
            "prior_nohistory": nohistory.get("command"),
            "base": base.get("command"),
        },
    }


def pairs() -> list[tuple[tuple[str, str], tuple[str, ...]]]:
    """(a, b) and the metrics to bootstrap them on: every interval the report shows."""
    out: list[tuple[tuple[str, str], tuple[str, ...]]] = []
    for system in (FIXED, VAL_BEST, CHAIN_ALONE):
        out += [((system, peer), GOAL_METRICS) for peer in PEERS]
    out += [((FIXED, CHAIN_ALONE), GOAL_METRICS), ((ECC, FIXED), GOAL_METRICS)]
    out += [((m + PRIOR, "best_fixed" + PRIOR), HEADLINE) for m in LEARNED]
    out += [((m + NOHISTORY, m + PRIOR), ABLATION_METRICS) for m in LEARNED]
    return out


def attach(results: dict[str, Any], load: Loader, resamples: int = 1000) -> list[dict[str, Any]]:
    """Bootstrap every pair of `pairs` into results["bootstrap"]; a pair with the no-history grid runs on
    the cells that grid finished (attach_bootstrap needs every seed of a dataset)."""
    entries: list[dict[str, Any]] = []
    nohist = {(c["dataset"], c["seed"]) for c in results["cells"]["prior_nohistory"]}
    for pair, metrics in pairs():
        rows = results["rows"]
        if pair[0].endswith(NOHISTORY):
            rows = [r for r in rows if (r["dataset"], r["seed"]) in nohist]
        entries += attach_bootstrap({"rows": rows}, load, [pair], metrics, PEERS, resamples)
    results["bootstrap"] = entries
    return entries

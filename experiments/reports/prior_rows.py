"""The rows prior.md is rendered from: six compare_orderings results files merged into one payload
(`combine`), the validation-chosen prior-chain rows, and the bootstrap pairs the report shows (`attach`).

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
# row-name suffixes, as the issue names rows (`rearrange+prior-omikuji`): which grid a row comes from
PRIOR, OMIKUJI, NOHISTORY = "+prior-ovr", "+prior-omikuji", "+prior-ovr+nohistory"
SHORTLIST = 50  # the shortlist grid's --shortlist
SL50 = f"+prior-ovr+sl{SHORTLIST}"
PER_LABEL = "+prior-ovr+per_label"  # one (a, b) per label (--prior-scale per_label); every other grid: shared
GRID_PEER = {PRIOR: "ovr_logistic", OMIKUJI: "omikuji", NOHISTORY: "ovr_logistic", SL50: "ovr_logistic"}  # --prior
GRID_PEER[PER_LABEL] = "ovr_logistic"
GRID_SHORTLIST = {SL50: SHORTLIST}  # each grid's --shortlist (0: none)
GRID_SCALE = {PER_LABEL: "per_label"}  # each grid's --prior-scale (default: shared)
FIXED, FIXED_OMIKUJI = "ensemble" + PRIOR, "ensemble" + OMIKUJI  # fixed in advance (fused on validation)
FIXED_SL50, FIXED_PER_LABEL = "ensemble" + SL50, "ensemble" + PER_LABEL
VAL_BEST = "val_best" + PRIOR  # per seed, the OvR-prior row best on validation
VAL_ANY = "val_best+prior-any"  # per seed, the row best on validation among both priors' grids
CHAIN_ALONE, ECC = "ensemble", "ecc"
LEARNED = ("rearrange", "combined", "ensemble")  # learned orders vs best_fixed under the prior, (e)
GOAL_DATASETS, NOHISTORY_GOAL, LEARNED_GOAL = 7, 6, 35  # the bars: of 9 datasets, of 45 cells
SUBSET_ZERO = 0.001  # subset accuracy left out where every compared method's seed mean is below this
ABLATION_METRICS = ("P@1", "example_f1")
MATCH, DISAGREE = 1e-9, ", predictions disagree"
# the grids by their payload name: the Args field that names the file, its suffix, its repo-relative folder
GRIDS = {
    "prior": ("prior", PRIOR, "experiments/results/prior"),
    "prior_nohistory": ("nohistory", NOHISTORY, "experiments/results/prior_nohistory"),
    "prior_omikuji": ("omikuji", OMIKUJI, "experiments/results/prior_omikuji"),
    "prior_sl50": ("shortlist50", SL50, f"experiments/results/prior_sl{SHORTLIST}"),
    "prior_perlabel": ("per_label", PER_LABEL, "experiments/results/prior_perlabel"),
    "base": ("base", "", "experiments/results"),
}


def grid_of(method: str) -> str:
    """The grid a merged row name comes from (module docs of reports/prior.py)."""
    if method == VAL_ANY:
        return "prior_omikuji"
    for grid, (_, suffix, _) in GRIDS.items():
        if suffix and method.endswith(suffix):
            return grid
    return "base"


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


def _commands(results: Mapping[str, Any], done: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """The distinct commands that made the finished cells (a file merged from several runs records
    each cell's), with how many cells each made; the file's last command where cells record none."""
    info = results.get("cells", {})
    counts: dict[str | None, int] = {}
    for d, s in sorted(done):
        command = info.get(f"{d}:{s}", {}).get("command") or results.get("command")
        counts[command] = counts.get(command, 0) + 1
    return [{"command": c, "cells": n} for c, n in counts.items() if c]


def validation_choice(rows: Sequence[Mapping[str, Any]], metric: str, name: str = VAL_BEST) -> dict[str, Any] | None:
    """Among one cell's fixed and learned rows (merged names) carrying validation metrics, the best on
    `metric` (ties to report order of the learner, then to the order of `rows`); None when no row carries one."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    candidates = [r for r in rows if r.get("kind") in ("fixed", "dynamic") and metric in (r.get("val") or {})]
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda r: (-r["val"][metric], rank.get(r["method"].split("+")[0], len(rank)), candidates.index(r)),
    )
    return {k: best[k] for k in ("dataset", "seed", "metrics", "val")} | {
        "method": name,
        "kind": "val_best",
        "chosen": best["method"],
        "wall_time_s": best.get("wall_time_s"),
    }


def _check_prior(
    name: str, results: Mapping[str, Any], expected: str, shortlist: int = 0, scale: str = "shared"
) -> None:
    """A grid given for the wrong prior, shortlist or a, b scale would be reported under the wrong name:
    refused in one line."""
    args = results.get("args") or {}
    ran = (args.get("prior"), int(args.get("shortlist") or 0), args.get("prior_scale") or "shared")
    if results.get("rows") and ran != (expected, shortlist, scale):
        said = [
            f"--prior {p}" + (f" --shortlist {m}" if m else "") + (f" --prior-scale {a}" if a != "shared" else "")
            for p, m, a in (ran, (expected, shortlist, scale))
        ]
        raise ValueError(f"--{name.replace('_', '-')}: that grid ran with {said[0]}, this input needs {said[1]}")


def combine(
    prior: Mapping[str, Any],
    nohistory: Mapping[str, Any] | None,
    base: Mapping[str, Any],
    omikuji: Mapping[str, Any] | None = None,
    shortlist50: Mapping[str, Any] | None = None,
    per_label: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One payload from the six files (module docs of reports/prior.py); rows outside the OvR-prior
    grid's finished cells are dropped, so every comparison is paired on the same cells."""
    files = {"prior": prior, "prior_nohistory": nohistory or {}, "prior_omikuji": omikuji or {}}
    files |= {"prior_sl50": shortlist50 or {}, "prior_perlabel": per_label or {}, "base": base}
    for grid in ("prior", "prior_nohistory", "prior_omikuji", "prior_sl50", "prior_perlabel"):
        field, suffix, _ = GRIDS[grid]
        _check_prior(
            field, files[grid], GRID_PEER[suffix], GRID_SHORTLIST.get(suffix, 0), GRID_SCALE.get(suffix, "shared")
        )
    chains = {g: [r for r in files[g].get("rows", []) if r.get("kind") != "peer"] for g in files if g != "base"}
    done = {(r["dataset"], r["seed"]) for r in chains["prior"]}
    finished = {g: {(r["dataset"], r["seed"]) for r in chains[g]} for g in chains}
    select = (prior.get("args") or {}).get("select_metric", "nDCG@3")
    renamed = {g: [_strip(r, GRIDS[g][1]) for r in chains[g] if (r["dataset"], r["seed"]) in done] for g in chains}
    rows = [r for g in chains for r in renamed[g]]

    def choose(grids: Sequence[str], name: str, cells: set[tuple[str, int]]) -> list[dict[str, Any] | None]:
        candidates = [r for g in grids for r in renamed[g]]
        return [
            validation_choice([r for r in candidates if (r["dataset"], r["seed"]) == c], select, name)
            for c in sorted(cells)
        ]

    choices = choose(["prior"], VAL_BEST, done)
    both = choose(["prior", "prior_omikuji"], VAL_ANY, done & finished["prior_omikuji"])
    rows += [c for c in choices + both if c is not None]
    rows += [_strip(r) for r in base.get("rows", []) if (r["dataset"], r["seed"]) in done]
    order = list(dict.fromkeys([d for d, _ in _expected(prior)] + [d for d, _ in sorted(done)]))

    def missing(grid: str) -> list[str]:  # the grid's own cells and the OvR-prior grid's, not yet finished
        want = set(_expected(files[grid]))
        if grid == "prior_sl50":  # run only where L > its shortlist: the OvR-prior cells of its own datasets
            want |= {c for c in done if c[0] in {d for d, _ in want}}
        elif grid != "prior":
            want |= done
        cells = sorted(want - finished[grid], key=lambda c: (order.index(c[0]) if c[0] in order else len(order), c))
        return [f"{d}:{s}" for d, s in cells]

    return {
        "rows": rows,
        "datasets": order,
        "select_metric": select,
        "validation_choice": bool(done) and all(c is not None for c in choices),
        "validation_choice_any": bool(both) and all(c is not None for c in both),
        "cells": {g: _cells(files[g], finished[g] & done) for g in chains},
        "missing_cells": {g: missing(g) for g in chains},
        "sources": {g: files[g].get("command") for g in files},
        "commands": {g: _commands(files[g], finished[g] & done if g != "base" else done) for g in files},
    }


def pairs() -> list[tuple[tuple[str, str], tuple[str, ...]]]:
    """(a, b) and the metrics to bootstrap them on: every interval the report shows."""
    out: list[tuple[tuple[str, str], tuple[str, ...]]] = []
    for system in (FIXED, VAL_BEST, CHAIN_ALONE, FIXED_OMIKUJI, VAL_ANY):
        out += [((system, peer), GOAL_METRICS) for peer in PEERS]
    out += [((FIXED, CHAIN_ALONE), GOAL_METRICS), ((ECC, FIXED), GOAL_METRICS), ((FIXED_OMIKUJI, FIXED), GOAL_METRICS)]
    out += [((FIXED_SL50, FIXED), GOAL_METRICS), ((FIXED_PER_LABEL, FIXED), GOAL_METRICS)]
    out += [((m + PRIOR, "best_fixed" + PRIOR), HEADLINE) for m in LEARNED]
    out += [((m + NOHISTORY, m + PRIOR), ABLATION_METRICS) for m in LEARNED]
    return out


def attach(results: dict[str, Any], load: Loader, resamples: int = 1000) -> list[dict[str, Any]]:
    """Bootstrap every pair of `pairs` into results["bootstrap"]; a pair with the no-history, the
    Omikuji-prior, the shortlist or the per-label grid runs on the cells that grid finished (attach_bootstrap needs every seed of a
    dataset), as `difference` pairs the seeds both rows have."""
    entries: list[dict[str, Any]] = []
    for pair, metrics in pairs():
        rows = results["rows"]
        for grid in {grid_of(m) for m in pair} - {"prior", "base"}:
            cells = {(c["dataset"], c["seed"]) for c in results["cells"][grid]}
            rows = [r for r in rows if (r["dataset"], r["seed"]) in cells]
        entries += attach_bootstrap({"rows": rows}, load, [pair], metrics, PEERS, resamples)
    results["bootstrap"] = entries
    return entries

"""Flat vs tree-factored output layer on real data: the quality table of issue 8.

    python experiments/compare_trees.py                          # bibtex corel5k delicious x seeds 0 1 2
    python experiments/compare_trees.py --datasets emotions --seeds 0 --rearrange-epochs 1 \
        --combined-epochs 1 --out-dir none                           # a smoke test

The grid (rearrange, combined, ensemble per output layer; rows, merging, skipping what the file
has) is experiments/grid/variants.py's; this script adds the output layers as variants.

The tree's shape (branching B x max leaf size, ``--shapes``) is chosen on validation: on a dataset's
first seed every shape trains a rearrangement policy and the best by ``--select-metric`` is kept for
that dataset's later seeds (so later seeds do not pay for the grid). The tree is built from PIFA
embeddings of the cell's training split (envs.label_clusters), beam ``--tree-beam``.

Methods: ``rearrange``, ``combined``, ``ensemble`` (flat) and ``rearrange+tree``, ``combined+tree``,
``ensemble+tree``; flat and tree rows of a cell may run apart. ``--combined-epochs 0`` trains
rearrangement only (no combined, no ensemble rows), for large datasets on a small budget.

Cells run through experiments/grid/execution.py (``--backend local|ray --address --jobs``) in two rounds:
each dataset's shape-choosing cell (first missing seed), then the rest with the chosen shapes. A
failed cell stays missing for a rerun (with ``--jobs 1`` locally its error propagates).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from labelchain.agents.config import DEFAULTS as D
from labelchain.experiments.run.config import ArgsError, check_args, precision_problems
from labelchain.experiments.run.common import (
    Renames,
    out_to_out_dir,
    command_line,
    mean_and_std,
    parse_args,
    percent_mean_std,
)
from labelchain.experiments.run.folder import run_script
from labelchain.experiments.run.threads import set_threads

from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.envs.metrics import HEADLINE
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.reports.claim_stats import across_datasets_markdown, bootstrap_markdown
from labelchain.experiments.grid import variants as vg
from labelchain.experiments.grid.execution import runs_dir_flag

TABLE_METRICS = ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5", "micro_f1", "macro_f1")
SCRIPT = "experiments/compare_trees.py"


@dataclass
class Args(vg.GridArgs):
    """Flat vs tree-factored chain (rearrange, combined, ensemble) on real data, over seeds."""

    RENAMED: ClassVar[Renames] = {"out": ("out_dir", out_to_out_dir("trees"))}  # before issue 20: a stem

    outputs: list[str] = field(default_factory=lambda: ["flat", "tree"])
    shapes: list[str] = field(
        default_factory=lambda: ["16x16", "4x64"], metadata={"help": "tree shapes BxLEAF, chosen on validation"}
    )
    tree_beam: int = field(default=D.policy.tree_beam, metadata={"at_least": 1})
    runs_dir: str = runs_dir_flag("runs/trees")


def parse_shape(text: str) -> tuple[int, int]:
    try:
        branching, leaf = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shapes: {text!r} is not BxLEAF (e.g. 16x16)") from None
    return branching, leaf


def new_policy(cell: vg.Cell, shape: str | None, tree_beam: int) -> ChainPolicy:
    vg.seeded(cell.seed)
    config = PolicyConfig(n_labels=cell.data.n_labels, hidden_size=cell.args.hidden_size)
    if shape is not None:
        branching, leaf = parse_shape(shape)
        config = config.replace(output="tree", tree_branching=branching, tree_leaf_size=leaf, tree_beam=tree_beam)
    return build_policy(config, cell.train, seed=cell.seed)


def run_output(cell: vg.Cell, output: str, chosen_shapes: dict[str, str]) -> list[dict]:
    """Rows of rearrange, combined and ensemble with one output layer in one cell."""
    args = cell.args
    assert isinstance(args, Args)
    suffix = "" if output == "flat" else "+tree"
    shape_info: dict = {}
    candidates: list[str | None]
    if output == "flat":
        candidates = [None]
    elif cell.name in chosen_shapes:
        candidates = [chosen_shapes[cell.name]]
    else:
        candidates = list(args.shapes)
    best: tuple[str | None, vg.Member] | None = None
    for shape in candidates:
        member = vg.trained(cell, new_policy(cell, shape, args.tree_beam), "rearrange", args.rearrange_epochs, args.lr)
        if shape is not None:
            shape_info[shape] = member.val[args.select_metric]
        if best is None or member.val[args.select_metric] > best[1].val[args.select_metric]:
            best = (shape, member)
    assert best is not None  # candidates is never empty
    shape, member = best
    if output == "tree" and shape is not None:
        chosen_shapes.setdefault(cell.name, shape)
        shape_info = {
            "shape": shape,
            "validation_by_shape": shape_info,
            "chosen_on_seed": cell.seed if len(candidates) > 1 else "earlier seed",
        }
    config = {"output": output, "tree_beam": args.tree_beam, **shape_info}
    return vg.learner_rows(cell, suffix, member, config)


def render_markdown(payload: dict) -> str:
    """Mean ± std over seeds per (dataset, method), ×100; train wall time in seconds."""
    rows = payload["rows"]
    lines = [
        "# Flat vs tree-factored chain (test, ×100, mean ± std over seeds)",
        "",
        *(f"`{c}`" for c in payload.get("commands", [payload["command"]])),
        "",
        "| dataset | method | seeds | " + " | ".join(TABLE_METRICS) + " | train s | epochs |",
        "|---|---|---|" + "---|" * (len(TABLE_METRICS) + 2),
    ]
    keys = sorted(
        {(r["dataset"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1].replace("+tree", "~"), "+tree" in k[1])
    )
    for dataset, method in keys:
        group = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
        cells = [percent_mean_std(*mean_and_std([r["metrics"][m] for r in group]), len(group)) for m in TABLE_METRICS]
        wall = mean_and_std([r["wall_time_s"] for r in group])[0]
        config = group[0]["config"]
        budget = f"{config['rearrange_epochs']}+{config['combined_epochs']}"
        lines.append(f"| {dataset} | {method} | {len(group)} | " + " | ".join(cells) + f" | {wall:.0f} | {budget} |")
    lines += [
        "",
        "Tree minus flat, points (×100), mean over the seeds both have:",
        "",
        "| dataset | learner | seeds | " + " | ".join(TABLE_METRICS) + " | train time ratio |",
        "|---|---|---|" + "---|" * (len(TABLE_METRICS) + 1),
    ]
    for (dataset, method), seeds, deltas, ratio in tree_minus_flat(rows):
        lines.append(
            f"| {dataset} | {method} | {seeds} | "
            + " | ".join(f"{100 * deltas[m]:+.2f}" for m in TABLE_METRICS)
            + f" | {ratio:.2f} |"
        )
    tried: dict[str, int] = {}  # most shapes any seed of a dataset compared (later seeds reuse one)
    for r in rows:
        if "+tree" in r["method"]:
            tried[r["dataset"]] = max(tried.get(r["dataset"], 0), len(r["config"].get("validation_by_shape", {})))
    shapes = [
        f"{d}: {s}" + (" (the only shape given)" if tried.get(d, 0) < 2 else "")
        for d, s in sorted(payload.get("shapes", {}).items())
    ]
    lines += [
        "",
        "Tree shapes (B x max leaf size) chosen on validation: " + ", ".join(shapes),
        "",
        (
            "epochs: rearrangement + combined epochs (the combined policy starts from the rearrangement "
            "one; its train s excludes the rearrangement's). PSP@k: propensity-scored precision "
            "(Jain et al. 2016, A = 0.55, B = 1.5, training-split counts), unnormalised."
        ),
        "",
        *across_datasets_markdown(rows, HEADLINE, None, NAMED_PAIRS, "cd_trees"),
        *bootstrap_markdown(payload, NAMED_PAIRS, HEADLINE),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


NAMED_PAIRS = tuple((f"{learner}+tree", learner) for learner in ("rearrange", "combined", "ensemble"))


def tree_minus_flat(rows: list[dict]) -> list[tuple]:
    """Per (dataset, learner): seeds with both variants, mean test differences tree - flat, and the
    mean ratio of training wall times tree / flat."""
    out = []
    for dataset, method in sorted({(r["dataset"], r["method"]) for r in rows if "+tree" not in r["method"]}):
        pairs = vg.seed_pairs(rows, dataset, method, method + "+tree")
        if not pairs:
            continue
        deltas = {m: vg.mean_difference(pairs, m) for m in TABLE_METRICS}
        ratio = float(np.mean([t["wall_time_s"] / f["wall_time_s"] for f, t in pairs]))
        out.append(((dataset, method), len(pairs), deltas, ratio))
    return out


def run_cell(
    args: Args, name: str, seed: int, shapes: dict[str, str], outputs: list[str], results: str | None = None
) -> dict[str, Any]:
    """One grid cell's rows for `outputs`, and `shapes` plus the tree shape it chose (if it chose);
    with `results` (<out-dir>/<grid>, the results stem) each test row's predictions are saved next to it (vg.predictions_folder)."""
    started = time.perf_counter()
    cell = vg.Cell(name, seed, args, results=results)
    chosen = dict(shapes)  # run_output adds this dataset's shape when the cell chooses it
    rows = [r for output in outputs for r in run_output(cell, output, chosen)]
    return {"rows": rows, "shapes": chosen, "seconds": time.perf_counter() - started}


def cell_key(name: str, seed: int) -> str:
    return f"{name}:{seed}"


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    try:
        for shape in args.shapes:
            if min(parse_shape(shape)) < 1:
                raise ValueError(f"--shapes: {shape!r} needs B and LEAF >= 1")
    except ValueError as error:
        raise ArgsError(str(error)) from None
    problems = args.execution_problems() + precision_problems(args.precision)
    problems += check_args(args)  # ranges and finite floats (a raw ValueError traceback before, issue 19)
    problems += [
        f"--outputs must be from ('flat', 'tree'), got {o!r}" for o in args.outputs if o not in ("flat", "tree")
    ]
    if problems:
        raise ArgsError("; ".join(problems))
    out = vg.results_stem(args, "trees")
    command = command_line(args, SCRIPT)
    payload: dict = {"rows": [], "shapes": {}, "args": asdict(args), "command": command, "commands": [command]}
    if out is not None and out.with_suffix(".json").exists():
        payload["shapes"] = vg.load_payload(out).get("shapes", {})
    done = {(d, s, variant or "flat") for d, s, variant in vg.done_variants(out)}
    # seeds-major: a partial grid already has one seed of every dataset
    missing = {(n, s): [o for o in args.outputs if (n, s, o) not in done] for s in args.seeds for n in args.datasets}
    pending = [cell for cell, outputs in missing.items() if outputs]

    def needs_shape(name: str) -> bool:
        return any("tree" in missing[(name, s)] for s in args.seeds) and name not in payload["shapes"]

    choosing = {name: (name, seed) for name, seed in reversed(pending) if needs_shape(name)}  # first seed each

    def record(key: str, result: dict[str, Any]) -> None:
        nonlocal payload
        payload["shapes"] = {**result["shapes"], **payload["shapes"]}  # a shape once chosen stays
        print(f"{key}: {result['seconds']:.0f} s", flush=True)
        if out is not None:
            payload = vg.merge_into(out, payload, result["rows"], render_markdown, merged_keys=("shapes",))
        else:
            payload["rows"] += result["rows"]

    def run(cells: list[tuple[str, int]]) -> list[str]:
        return vg.run_cells(
            args,
            [
                Cell(
                    cell_key(n, s),
                    run_cell,
                    {
                        "args": args,
                        "name": n,
                        "seed": s,
                        "shapes": dict(payload["shapes"]),
                        "outputs": missing[(n, s)],
                        "results": None if out is None else str(out),
                    },
                )
                for n, s in cells
            ],
            record,
        )

    failed = run([cell for cell in pending if cell in choosing.values()])
    later = [cell for cell in pending if cell not in choosing.values()]
    failed += [cell_key(n, s) for n, s in later if needs_shape(n)]  # its shape-choosing cell failed
    failed += run([(n, s) for n, s in later if not needs_shape(n)])
    print(render_markdown(payload))
    if failed:
        print(f"compare_trees: {len(failed)} cells missing ({', '.join(failed)}); rerun the same command to retry")
    return payload


if __name__ == "__main__":
    run_script(lambda: main(parse_args(Args)))

"""The paper's table: fixed label orderings vs target rearrangement vs RL, per dataset, over seeds.

    python experiments/compare_orderings.py                     # bibtex delicious reuters21578 x seeds 0 1 2
    python experiments/compare_orderings.py --jobs 2            # two grid cells at a time, one thread each
    python experiments/compare_orderings.py --quick             # emotions, 1 seed, tiny budget (smoke test)
    python experiments/compare_orderings.py --backend ray --address auto   # each cell a Ray Tune trial on a cluster
    python experiments/compare_orderings.py --datasets emotions data/my_set/ my.arff --out-dir runs/mine
        # any dataset folder or file train_rl.py's --dataset takes (MULAN/MEKA ARFF, XC, LIBSVM): docs/benchmark-your-data.md

One grid cell = (dataset, seed). `train_rl.main` trains every learner of the cell in one run folder
(the four fixed orderings, target rearrangement, REINFORCE, PPO, the combined objective, all with
the same architecture and update budget; RL learners start from the cell's rearrangement policy),
keeps each learner's best-on-validation policy, scores it on test, picks the best fixed ordering on
validation and fits the rearrange+combined ensemble. Then the non-sequential peers (experiments/peers.py)
are scored on the same dataset. Cells run seeds-major (every dataset for seed 0 first), so a partial
grid already has one seed of everything.

After each cell its rows are merged into `orderings.json` (atomic write) and `orderings.md` is
rebuilt from the whole file (experiments/grid/orderings_file.py), so an interrupted grid resumes where it stopped: cells already in
orderings.json with the same configuration are skipped, and a cell whose run folder exists but did
not finish is continued with train_rl's resume. A cell's chain rows are read from its run folder
(orderings_rows.py); the tables and the claims in orderings.md are computed from orderings.json only
(see orderings_report.py). Every row's test predictions (envs.predictions) are copied from the run
folder to `<out_dir>/predictions/orderings/<dataset>/seed<seed>/<method>.npz` as the cell is merged
(experiments/grid/predictions.py), so statistics over the grid need no retraining.

Default budget (300 updates of 64 documents per learner, validation every 50): measured on one
free thread, the eight learners cost about 0.7 s (bibtex), 1.2 s (reuters21578) and 2.4 s
(delicious) per update together, PPO alone about half of that; the peers add about 2 min per seed
(mostly one-vs-rest LR on delicious' 983 labels). One seed of the three datasets is then about
25 min of one free core, the grid about 75 core-minutes: about 40 min with --jobs 2 on two free
cores, about 1.5 hours when other work leaves each job half a core. Cell wall times are in
orderings.json ("cells").
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labelchain.agents.learners import LEARNERS
from labelchain.envs.data import locate
from labelchain.envs.data.errors import DataNotFoundError
from labelchain.envs.data.loading import load_dataset
from labelchain.experiments.run import train_rl_args
from labelchain.experiments.run.common import results_dir, command_line, given_fields, parse_args
from labelchain.experiments.run.folder import check_writable_folder
from labelchain.experiments.run.config import ArgsError, TrainKnobs, check_args, knobs_of, override
from labelchain.experiments.grid.cells import Cell
from labelchain.experiments.grid.execution import ExecutionFlags, runs_dir_flag
from labelchain.experiments.grid.orderings_file import (
    cell_key,
    load_results,
    merge_cell,
    merge_cell_into_file,
    write_results,
)
from labelchain.experiments.reports.orderings import TABLE_METRICS
from labelchain.experiments.grid.orderings_rows import rows_from_run
from labelchain.experiments.peers import PEERS, PeerUnavailable, run_peer, tuned_config
from labelchain.experiments.grid.lookup import run_config, train_or_resume
from labelchain.experiments.run.folder import CONFIG_FILE, METRICS_FILE, GracefulInterrupt, run_name_part, run_script
from labelchain.envs.predictions import PREDICTIONS_DIR
from labelchain.experiments.grid.predictions import cell_predictions_dir, keep_cell_predictions
from labelchain.experiments.run.threads import set_threads

GRID = "orderings"  # its prediction files: <out_dir>/predictions/orderings/<dataset>/seed<seed>/
GROUP_NAME = "compare"  # run folders: {runs_dir}/{dataset}__compare__{seed}__{time}
ENSEMBLE = ["rearrange", "combined"]
SCRIPT = "experiments/compare_orderings.py"


@dataclass
class Args(TrainKnobs, ExecutionFlags):
    """Fixed label orderings vs target rearrangement vs RL (and peers) on test, mean ± std over seeds."""

    updates: int = override("updates", 300, "updates per learner (RL learners: on top of rearrange)")
    datasets: list[str] = field(
        default_factory=lambda: ["bibtex", "delicious", "reuters21578"],
        metadata={"help": "dataset names or paths of dataset folders / files (MULAN, MEKA, XC, LIBSVM)"},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"at_least": 0})
    learners: list[str] = field(default_factory=lambda: list(LEARNERS), metadata={"help": f"from {LEARNERS}"})
    peers: list[str] = field(
        default_factory=lambda: ["ovr_logistic", "omikuji", "label_frequency"],
        metadata={"help": f"non-sequential reference rows, from {sorted(PEERS)} (or none)"},
    )
    runs_dir: str = runs_dir_flag("runs/compare")
    out_dir: str | None = field(
        default=None,
        metadata={"help": "orderings.json/.md go here (default experiments/results; with --quick: RUNS_DIR/quick)"},
    )
    quick: bool = field(
        default=False, metadata={"help": "smoke test: emotions, first seed (unless given), 30 updates, hidden 32"}
    )
    redo: bool = field(
        default=False,
        metadata={
            "help": "recompute the grid's cells even when the results file has them (e.g. to save their "
            "predictions; use a fresh --runs-dir); the table's command stays"
        },
    )
    peers_only: bool = field(
        default=False, metadata={"help": "score --peers again in the cells already in the file, chain rows kept"}
    )
    add_peers: bool = field(
        default=False,
        metadata={"help": "with --peers-only: add --peers' rows, keeping the cell's other peer rows as they are"},
    )


# ----------------------------------------------------------------------------- arguments
def resolve_args(args: Args) -> Args:
    """Apply --quick, fill out_dir, check every field (train_rl checks the knobs it receives)."""
    given = given_fields(args)
    args = replace(args)
    if args.quick:  # typed --datasets / --seeds are kept (issue 19: were replaced without a word)
        args.datasets = args.datasets if "datasets" in given else ["emotions"]
        args.seeds = args.seeds if "seeds" in given else args.seeds[:1]
        args.updates, args.eval_every, args.checkpoint_every = min(args.updates, 30), 10, 10
        args.hidden_size = min(args.hidden_size, 32)
    args.out_dir = str(results_dir(args.out_dir, args.runs_dir, args.quick))
    problems = []
    if not args.datasets or len({run_name_part(d) for d in args.datasets}) != len(args.datasets):
        problems.append(f"--datasets must be distinct names or paths with distinct last parts, got {args.datasets}")
    for dataset in args.datasets:  # a name, or a folder / file of any supported format (envs.data.locate)
        try:
            locate.resolve(dataset, args.data_dir)
        except (DataNotFoundError, ValueError) as error:
            problems.append(f"--datasets {dataset}: {str(error).splitlines()[0]}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        problems.append(f"--seeds must be distinct integers, got {args.seeds}")
    if args.peers == ["none"]:
        args.peers = []
    if args.add_peers and not (args.peers_only and args.peers):
        problems.append("--add-peers needs --peers-only and at least one --peers")
    if any(name not in PEERS for name in args.peers) or len(set(args.peers)) != len(args.peers):
        problems.append(f"--peers must be distinct names from {sorted(PEERS)} (or none), got {args.peers}")
    problems += check_args(args)
    problems += args.execution_problems()
    if problems:
        raise ArgsError("; ".join(problems))
    train_rl_args.resolve_args(train_args(args, args.datasets[0], args.seeds[0]))  # checks every knob
    return args


def train_args(args: Args, dataset: str, seed: int) -> train_rl_args.Args:
    """The train_rl run of one cell: every training knob as given, the cell's dataset and seed."""
    return train_rl_args.Args(
        **knobs_of(args),
        dataset=dataset,
        learners=list(args.learners),
        ensemble=list(ENSEMBLE),
        seed=seed,
        runs_dir=args.runs_dir,
        group_name=GROUP_NAME,
    )


def cell_config(args: Args, dataset: str, seed: int) -> dict[str, Any]:
    return {"train_rl": run_config(train_args(args, dataset, seed)), "peers": list(args.peers)}


# ----------------------------------------------------------------------------- one cell
def compute_cell(args: Args, dataset: str, seed: int, command: str) -> dict[str, Any] | None:
    """Train (or continue) the cell's run, then score the peers; None when training was stopped."""
    started = time.perf_counter()
    run_dir = train_or_resume(train_args(args, dataset, seed))
    if not (run_dir / METRICS_FILE).exists():
        return None
    rows = rows_from_run(run_dir, dataset, seed)
    derived = json.loads((run_dir / CONFIG_FILE).read_text())["derived"]
    data = {key: derived[key] for key in ("n_train", "n_val", "n_test", "n_labels", "n_features", "max_steps")}
    peer_rows, skipped = score_peers(args, dataset, seed, run_dir / PREDICTIONS_DIR)
    rows += peer_rows
    return {
        "dataset": dataset,
        "seed": seed,
        "config": cell_config(args, dataset, seed),
        "run_dir": str(run_dir),
        "data": data,
        "rows": rows,
        "skipped_peers": skipped,
        "cell_wall_time_s": time.perf_counter() - started,
        "command": command,
    }


def score_peers(
    args: Args, dataset: str, seed: int, predictions_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The peers' rows of one cell (tuned on the chains' validation slice) and the peers skipped, with why;
    each peer's test predictions go to `predictions_dir/<peer>.npz`."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    if not args.peers:
        return rows, skipped
    ds = load_dataset(dataset, data_dir=args.data_dir)
    for name in args.peers:
        try:
            result, tuned = run_peer(name, ds, seed, args.val_fraction, save_to=predictions_dir / f"{name}.npz")
        except PeerUnavailable as note:
            skipped.append({"dataset": dataset, "seed": seed, "peer": name, "reason": str(note)})
            continue
        timing: dict[str, float] = {
            key: result.pop(key) for key in ("wall_time_s", "fit_time_s", "predict_time_s") if key in result
        }
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "method": name,
                "kind": "peer",
                "metrics": result,
                "config": tuned_config(tuned, args.val_fraction),
                "wall_time_s": timing.pop("wall_time_s"),
                **timing,
                "run_dir": None,
            }
        )
    return rows, skipped


def refresh_peers(args: Args, results: dict[str, Any], out_dir: Path, command: str) -> list[str]:
    """--peers-only: score --peers again in every grid cell already in the file, keeping its chain rows.

    For tables whose peer rows predate a change of the peers (e.g. tuning) while retraining the chains
    would cost far more; the cell's recorded peer list becomes --peers and `command` its peers_command.
    With --add-peers only --peers' rows are (re)scored: the cell's other peer rows stay (Omikuji has no
    seed, so scoring it again would move its numbers), --peers join its peer list and `command` is
    kept per added peer (added_peers_commands). Returns the cells not in the file.
    """
    absent = []
    for dataset, seed in grid(args):
        cell = results["cells"].get(cell_key(dataset, seed))
        if cell is None:
            absent.append(cell_key(dataset, seed))
            continue
        rows, skipped = score_peers(args, dataset, seed, cell_predictions_dir(out_dir, GRID, dataset, seed))
        chains = [  # with --add-peers "chains" also holds the peer rows that stay
            r
            for r in results["rows"]
            if (r["dataset"], r["seed"]) == (dataset, seed)
            and (r["kind"] != "peer" or (args.add_peers and r["method"] not in args.peers))
        ]
        if args.add_peers:  # the other peers' rows and the command that scored them stay
            old = [p for p in cell["config"].get("peers", []) if p not in args.peers]
            added = {**cell.get("added_peers_commands", {}), **{name: command for name in args.peers}}
            cell = {
                **cell,
                "config": {**cell["config"], "peers": old + list(args.peers)},
                "added_peers_commands": added,
            }
            skipped += [
                s
                for s in results.get("skipped_peers", [])
                if (s["dataset"], s["seed"]) == (dataset, seed) and s["peer"] not in args.peers
            ]
        else:
            config = {**cell["config"], "peers": list(args.peers)}
            cell = {k: v for k, v in cell.items() if k != "added_peers_commands"}
            cell = {**cell, "config": config, "peers_command": command}
        merge_cell(results, {**cell, "rows": chains + rows, "dataset": dataset, "seed": seed, "skipped_peers": skipped})
        write_results(out_dir, results)
        print(f"{cell_key(dataset, seed)}: peers {', '.join(r['method'] for r in rows)}", flush=True)
    return absent


# ----------------------------------------------------------------------------- the grid
def grid(args: Args) -> list[tuple[str, int]]:
    """Seeds-major: every dataset of seed 0, then seed 1...: a partial grid holds whole seeds."""
    return [(dataset, seed) for seed in args.seeds for dataset in args.datasets]


def missing_cells(results: dict[str, Any], args: Args) -> list[tuple[str, int]]:
    """Grid cells not in `results` with this exact configuration (those must be (re)computed)."""
    return [(d, s) for d, s in grid(args) if not _same_config(results["cells"].get(cell_key(d, s)), args, d, s)]


def _same_config(cell: dict[str, Any] | None, args: Args, dataset: str, seed: int) -> bool:
    if cell is None or "config" not in cell:
        return False
    saved, want = cell["config"], cell_config(args, dataset, seed)
    # a cell holding every asked peer is done (it may hold more, e.g. one added by --add-peers)
    return run_config(saved.get("train_rl", {})) == want["train_rl"] and set(want["peers"]) <= set(
        saved.get("peers", [])
    )


def main(args: Args) -> Path:
    """Run the missing cells of the grid, merging each into orderings.json; returns that file's path.

    Cells run through experiments/grid/execution.py (--backend local or ray). Locally with --jobs 1 an
    error in a cell propagates; otherwise (an unattended grid) it is printed and the cell stays
    missing, so the other cells go on and a rerun retries it.
    """
    set_threads(args.threads or 1)
    given = args
    args = resolve_args(args)
    out_dir = results_dir(args.out_dir, args.runs_dir, args.quick)
    check_writable_folder(out_dir, "--out-dir", create=True)  # one line, not a FileNotFoundError traceback
    results = load_results(out_dir / "orderings.json")
    command = command_line(given, SCRIPT)
    if args.peers_only:  # the table's command stays the one that trained the chains
        absent = refresh_peers(args, results, out_dir, command)
        if absent:
            print(f"--peers-only: no chain rows for {', '.join(absent)}; run the grid without it for those")
        return out_dir / "orderings.json"
    if not (args.redo and results["cells"]):  # a redo recomputes cells of the same table: its command stays
        results.update(command=command, argv=sys.argv, args=asdict(args), metrics=list(TABLE_METRICS))
    pending = grid(args) if args.redo else missing_cells(results, args)
    done = len(grid(args)) - len(pending)
    write_results(out_dir, results)

    def finish(cell: dict[str, Any]) -> None:
        methods = [row["method"] for row in cell["rows"]]
        try:
            cell["predictions"] = keep_cell_predictions(
                Path(cell["run_dir"]), out_dir, GRID, cell["dataset"], cell["seed"], methods
            )
        except FileNotFoundError as missing:  # a finished run reused from before predictions were saved
            print(f"\n{cell_key(cell['dataset'], cell['seed'])}: {missing}; --redo with a fresh --runs-dir saves them")
        nonlocal results
        results = merge_cell_into_file(out_dir, cell)

    with GracefulInterrupt() as interrupt:
        in_process = args.backend == "local" and args.jobs == 1
        quiet = (
            args if in_process else replace(args, progress=False)
        )  # several processes' bars would overwrite each other
        cells = [
            Cell(cell_key(d, s), compute_cell, {"args": quiet, "dataset": d, "seed": s, "command": command})
            for d, s in pending
        ]
        args.run_grid(
            cells,
            lambda _key, cell: finish(cell),
            metric=args.select_metric,
            done_before=done,
            progress=args.progress,
            should_stop=lambda: interrupt.requested,
        )
    left = [cell_key(d, s) for d, s in missing_cells(results, args)]
    print(f"\nresults: {out_dir / 'orderings.json'}\ntable:   {out_dir / 'orderings.md'}")
    if left:
        print(
            f"stopped with {len(left)} cells left ({', '.join(left)}); rerun the same command to resume:\n  {command}"
        )
    return out_dir / "orderings.json"


def grid_finished(args: Args) -> bool:
    """True when every cell of the grid is in the results file with this configuration."""
    resolved = resolve_args(args)
    return not missing_cells(
        load_results(results_dir(resolved.out_dir, resolved.runs_dir, resolved.quick) / "orderings.json"), resolved
    )


if __name__ == "__main__":
    cli_args = run_script(lambda: parse_args(Args))
    run_script(lambda: main(cli_args))
    sys.exit(0 if run_script(lambda: grid_finished(cli_args)) else 130)  # 130: stopped early, rerun to resume

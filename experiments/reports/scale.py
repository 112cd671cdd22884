"""The scale benchmark's report: its markdown table, log-log plot and goal ratios, from results alone.

Kept apart from bench_scale.py, which measures the cells (each in its own process); everything here
reads the `results` dict (L -> cell kind -> numbers) that scale.json saves, so the table and plot
can be rebuilt from that file (`bench_scale.py --update` merges new cells into it and re-renders).
"""

from __future__ import annotations

from pathlib import Path


COLUMNS = (
    ("train_docs_per_s", "train docs/CPU-s", ",.0f"),
    ("decode_docs_per_s", "decode docs/CPU-s", ",.0f"),
    ("P@1", "P@1", ".3f"),
    ("parameters", "parameters", ",d"),
    ("tree_build_s", "tree build s", ".1f"),
    ("peak_rss_mb", "peak MB", ",.0f"),
)


def table(results: dict, outputs: list[str]) -> str:
    """Markdown: one row per (L, output), then env and Omikuji rows per L."""
    lines = ["| L | run | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for n_labels, cells in results.items():
        for kind in outputs:
            row = cells.get(kind, {})
            values = [format(row[key], fmt) if key in row else "-" for key, _, fmt in COLUMNS]
            sparse = " (sparse label grads)" if row.get("sparse_label_grads") else ""
            lines.append(f"| {int(n_labels):,} | chain, {kind} output{sparse} | " + " | ".join(values) + " |")
        if "omikuji" in cells:
            o = cells["omikuji"]
            lines.append(
                f"| {int(n_labels):,} | Omikuji (1 tree), train {o['omikuji_train_s']:.1f} CPU-s | "
                f"- | {o['omikuji_decode_docs_per_s']:,.0f} | {o['omikuji_P@1']:.3f} | - | - | "
                f"{o['peak_rss_mb']:,.0f} |"
            )
    lines += ["", *prior_table(results)]
    lines += ["", "| L | env label-steps/CPU-s (no dense mask) | with dense mask | peak MB |", "|---|---|---|---|"]
    for n_labels, cells in results.items():
        if "env" in cells:
            e = cells["env"]
            lines.append(
                f"| {int(n_labels):,} | {e['env_steps_per_s']:,.0f} | "
                f"{e['env_dense_mask_steps_per_s']:,.0f} | {e['peak_rss_mb']:,.0f} |"
            )
    return "\n".join(lines)


def _num(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else "-"


def prior_table(results: dict) -> list[str]:
    """Markdown lines: the prior chain (docs/prior-scale.md) beside Omikuji at every L that has one.

    Decode rates: the chain alone (the matcher's scores given), matcher + chain (the top-M scoring
    of the same documents timed too), and the chain's dense O(L) step for comparison."""
    if not any("prior" in cells for cells in results.values()):
        return []
    lines = [
        "Prior chain (Omikuji's out-of-fold scores as the prior, shortlist M; docs/prior-scale.md) beside Omikuji:",
        "",
        "| L | run | P@1 | P@5 | PSP@5 | train docs/CPU-s | decode docs/CPU-s | matcher + chain | dense step "
        "| recall@M | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n_labels, cells in results.items():
        if "prior" not in cells:
            continue
        row = cells["prior"]
        lines.append(
            f"| {int(n_labels):,} | prior chain, M={row['shortlist']}, {row['learner']} x {row['updates']} updates, "
            f"{row['folds']} folds | {row['P@1']:.3f} | {row['P@5']:.3f} | {row['PSP@5']:.3f} | "
            f"{row['train_docs_per_s']:,.0f} | {row['decode_docs_per_s']:,.0f} | "
            f"{row['pipeline_decode_docs_per_s']:,.0f} | {row['dense_decode_docs_per_s']:,.0f} | "
            f"{row['recall_at_M']:.3f} | {row['peak_rss_mb']:,.0f} |"
        )
        lines.append(
            f"| {int(n_labels):,} | its prior alone (Omikuji out-of-fold, top M) | {row['prior_alone_P@1']:.3f} | "
            f"{row['prior_alone_P@5']:.3f} | {row['prior_alone_PSP@5']:.3f} | - | - | - | - | - | - |"
        )
        if "omikuji" in cells:
            o = cells["omikuji"]
            lines.append(
                f"| {int(n_labels):,} | Omikuji (1 tree), train {o['omikuji_train_s']:.1f} CPU-s | "
                f"{o['omikuji_P@1']:.3f} | {_num(o, 'omikuji_P@5', '.3f')} | {_num(o, 'omikuji_PSP@5', '.3f')} | "
                f"- | {o['omikuji_decode_docs_per_s']:,.0f} | - | - | - | {o['peak_rss_mb']:,.0f} |"
            )
    goals = prior_goals(results)
    for n_labels, goal in goals.items():
        lines += [
            "",
            f"Goal at L = {int(n_labels):,} (P@1 >= Omikuji's, decoding at >= 1/3 of its docs/s): "
            f"P@1 {goal['P@1_minus_omikuji']:+.3f} ({'met' if goal['P@1_met'] else 'missed'}); decoding "
            f"{goal['decode_over_omikuji']:.2f}x Omikuji's for the chain alone "
            f"({'met' if goal['decode_met'] else 'missed'}), {goal['pipeline_decode_over_omikuji']:.2f}x "
            f"with the matcher's top-M scoring counted ({'met' if goal['pipeline_decode_met'] else 'missed'}).",
        ]
    return lines


def prior_goals(results: dict) -> dict:
    """Issue 16's scale goal at every L with a prior chain and an Omikuji row measured."""
    out = {}
    for n_labels, cells in results.items():
        if "prior" in cells and "omikuji" in cells:
            row, o = cells["prior"], cells["omikuji"]
            rate = o["omikuji_decode_docs_per_s"]
            out[n_labels] = {
                "P@1_minus_omikuji": row["P@1"] - o["omikuji_P@1"],
                "P@1_met": row["P@1"] >= o["omikuji_P@1"],
                "decode_over_omikuji": row["decode_docs_per_s"] / rate,
                "decode_met": row["decode_docs_per_s"] >= rate / 3,
                "pipeline_decode_over_omikuji": row["pipeline_decode_docs_per_s"] / rate,
                "pipeline_decode_met": row["pipeline_decode_docs_per_s"] >= rate / 3,
            }
    return out


def plot(results: dict, outputs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(n) for n in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind in outputs:
        for axis, key in zip(axes, ("train_docs_per_s", "decode_docs_per_s")):
            points = [(n, results[str(n)][kind][key]) for n in sizes if kind in results[str(n)]]
            if points:
                axis.plot(*zip(*points), marker="o", label=f"chain, {kind}")
    for axis, key in zip(axes, ("train_docs_per_s", "decode_docs_per_s")):
        points = [(n, results[str(n)]["prior"][key]) for n in sizes if "prior" in results[str(n)]]
        if points:
            axis.plot(*zip(*points), marker="^", label="prior chain, flat, shortlist")
    omikuji = [
        (n, results[str(n)]["omikuji"]["omikuji_decode_docs_per_s"]) for n in sizes if "omikuji" in results[str(n)]
    ]
    if omikuji:
        axes[1].plot(*zip(*omikuji), marker="s", linestyle="--", label="Omikuji")
    for axis, title in zip(axes, ("training (teacher forcing)", "greedy decoding")):
        axis.set(
            xscale="log", yscale="log", xlabel="labels L (synthetic)", ylabel="documents / CPU-second", title=title
        )
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.suptitle("label chain at scale, one thread (synthetic label spaces)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(results: dict, outputs: list[str]) -> dict:
    """The issue's two goals, where the cells to judge them exist."""
    out: dict = {}
    sizes = sorted(int(n) for n in results)
    lo = str(sizes[0])
    for hi in map(str, sizes[1:]):  # the issue's goal is stated from L = 1,000 to L = 100,000
        for kind in outputs:
            if kind in results[lo] and kind in results[hi]:
                for key in ("train", "decode"):
                    out[f"{kind}_{key}_slowdown_{lo}_to_{hi}"] = (
                        results[lo][kind][f"{key}_docs_per_s"] / results[hi][kind][f"{key}_docs_per_s"]
                    )
    for n_labels, goal in prior_goals(results).items():
        out[f"prior_goal_L{n_labels}"] = goal
    if "tree" in outputs and "flat" in outputs:
        for n, cells in results.items():
            if "tree" in cells and "flat" in cells:
                for key in ("train", "decode"):
                    out[f"tree_over_flat_{key}_L{n}"] = (
                        cells["tree"][f"{key}_docs_per_s"] / cells["flat"][f"{key}_docs_per_s"]
                    )
    return out

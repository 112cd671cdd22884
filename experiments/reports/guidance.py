"""The guidance table (experiments/results/guidance.md) from its rows: means over seeds, then guided
minus unguided per cell with a verdict on XLGen's claim.

The claim, from XLGen: cluster guidance improves tail-label F1 and macro F1 while holding or
improving overall F1. A cell (dataset, learner, variant) is compared with the unguided chain of the
same learner on the same labels (same PU setting); the verdict is "holds" when tail F1 and macro F1
both rise and micro F1 does not fall by more than its seed noise (the larger standard deviation over
seeds of the two rows), otherwise it names what failed. Tail F1 is `rare_f1` (envs.metrics: macro F1
over the rarest third of the labels present in test): XLGen's <=5-shot bucket is empty on bibtex and
delicious (every label has at least 10 training documents), so it cannot carry the verdict.
"""

from __future__ import annotations

import math

from labelchain.experiments.reports.claim_stats import across_datasets_markdown, bootstrap_markdown
from labelchain.experiments.run.common import mean_and_std, percent_mean_std

from labelchain.experiments.grid.variants import mean_difference, seed_pairs, variant_of

TABLE_METRICS = (
    "P@1",
    "P@3",
    "P@5",
    "nDCG@3",
    "nDCG@5",
    "PSP@1",
    "PSP@3",
    "PSP@5",
    "micro_f1",
    "macro_f1",
    "rare_f1",
    "0shot_micro_f1",
    "1shot_micro_f1",
    "5shot_micro_f1",
)
HEADERS = {
    "rare_f1": "rare F1",
    "0shot_micro_f1": "0-shot F1",
    "1shot_micro_f1": "1-shot F1",
    "5shot_micro_f1": "≤5-shot F1",
    "50shot_micro_f1": "≤50-shot F1",
}
DELTA_METRICS = ("P@1", "nDCG@5", "PSP@5", "micro_f1", "macro_f1", "rare_f1", "5shot_micro_f1", "50shot_micro_f1")
TAIL, MACRO, OVERALL = "rare_f1", "macro_f1", "micro_f1"
CLAIM_METRICS = (TAIL, MACRO, OVERALL)  # the statistics sections (experiments.reports.claim_stats)
NAMED_PAIRS = tuple(
    (f"{learner}+{guidance}", learner)
    for learner in ("rearrange", "combined", "ensemble")
    for guidance in ("bcl", "mcg")
)


def _cell(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"  # an empty few-shot bucket: nothing to measure
    return percent_mean_std(*mean_and_std(finite), len(finite))


def baseline_of(method: str) -> str:
    """The unguided method a guided one is compared with: same learner, same PU setting."""
    learner, variant = method.partition("+")[0], variant_of(method)
    pu = [part for part in variant.split("+") if part.startswith("pu")]
    return "+".join([learner, *pu])


def verdict(deltas: dict[str, float], noise: float) -> str:
    """'holds', or what failed of: tail (rare) F1 up, macro F1 up, micro F1 held (within seed noise)."""
    failed = []
    if not deltas[TAIL] > 0:
        failed.append(f"rare F1 {100 * deltas[TAIL]:+.2f}")
    if not deltas[MACRO] > 0:
        failed.append(f"macro F1 {100 * deltas[MACRO]:+.2f}")
    if deltas[OVERALL] < -noise:
        failed.append(f"micro F1 {100 * deltas[OVERALL]:+.2f} (noise {100 * noise:.2f})")
    return "holds" if not failed else "no: " + ", ".join(failed)


def guided_minus_unguided(rows: list[dict]) -> list[tuple]:
    """Per (dataset, guided method): seeds both have, mean differences, and the verdict."""
    out = []
    guided = sorted({(r["dataset"], r["method"]) for r in rows if baseline_of(r["method"]) != r["method"]})
    for dataset, method in guided:
        base = baseline_of(method)
        pairs = seed_pairs(rows, dataset, base, method)
        if not pairs:
            continue
        deltas = {m: mean_difference(pairs, m) for m in DELTA_METRICS}
        noise = max(mean_and_std([r["metrics"][OVERALL] for r in side])[1] for side in zip(*pairs, strict=True))
        out.append((dataset, method, base, len(pairs), deltas, verdict(deltas, noise)))
    return out


def render_markdown(payload: dict) -> str:
    rows = payload["rows"]
    names = [HEADERS.get(m, m) for m in TABLE_METRICS]
    lines = [
        "# Cluster guidance (test, ×100, mean ± std over seeds)",
        "",
        *(f"`{c}`" for c in payload.get("commands", [payload["command"]])),
        "",
        "| dataset | method | seeds | " + " | ".join(names) + " | train s |",
        "|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for dataset, method in sorted(
        {(r["dataset"], r["method"]) for r in rows}, key=lambda k: (k[0], variant_of(k[1]), k[1])
    ):
        group = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
        cells = [_cell([r["metrics"].get(m, math.nan) for r in group]) for m in TABLE_METRICS]
        wall = mean_and_std([r["wall_time_s"] for r in group])[0]
        lines.append(f"| {dataset} | {method} | {len(group)} | " + " | ".join(cells) + f" | {wall:.0f} |")
    delta_names = [HEADERS.get(m, m) for m in DELTA_METRICS]
    lines += [
        "",
        "Guided minus unguided (same learner, same labels), points ×100, mean over the seeds both have;",
        "the verdict on XLGen's claim (rare-label and macro F1 up, micro F1 held within seed noise):",
        "",
        "| dataset | method | vs | seeds | " + " | ".join(delta_names) + " | verdict |",
        "|---|---|---|---|" + "---|" * (len(delta_names) + 1),
    ]
    for dataset, method, base, seeds, deltas, text in guided_minus_unguided(rows):
        values = " | ".join("n/a" if math.isnan(deltas[m]) else f"{100 * deltas[m]:+.2f}" for m in DELTA_METRICS)
        lines.append(f"| {dataset} | {method} | {base} | {seeds} | {values} | {text} |")
    lines += [
        "",
        "Few-shot buckets by training documents per label (envs.tail_metrics): 0-shot = unseen in training "
        "but in test, 1-shot = 1, ≤5-shot = 1..5, ≤50-shot = 1..50; micro F1 over the bucket's labels (n/a: "
        "no such label). rare F1: macro F1 over the rarest third of the labels present in test. PSP@k: propensity-scored "
        "precision (Jain et al. 2016, A = 0.55, B = 1.5), unnormalised. train s: training wall time "
        "(ensemble: its members' sum).",
    ]
    lines += ["", *across_datasets_markdown(rows, CLAIM_METRICS, None, NAMED_PAIRS, "cd_guidance")]
    lines += bootstrap_markdown(payload, NAMED_PAIRS, CLAIM_METRICS)
    while lines[-1] == "":
        lines.pop()
    notes = payload.get("notes", [])
    if notes:  # provenance the rows cannot carry
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"

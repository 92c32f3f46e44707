"""The representation section of report.md: each probe beside its baseline, the verdicts a reader
must not miss, and the geometry and stability of the representations (`evaluate --probes`)."""

from __future__ import annotations

from typing import Any

from behavior_stream.evaluation.formatting import fmt, interval

PROBE_LABELS = {
    "purchase": "purchase in next session",
    "category": "category of its first item",
    "length": "its length (events)",
}
PROBE_NAMES = {
    "purchase": "next-session purchase",
    "category": "next-session category",
    "length": "next-session length",
}
VERDICTS = {"better": "better than baseline", "worse": "worse than baseline", "at chance": "**at chance**"}


def probe_verdicts(probes: dict[str, Any]) -> list[str]:
    """One plain sentence per probe that is at chance, worse than its baseline or could not be scored:
    what a reader must not take for knowledge in the representation."""
    lines = []
    for name, label in PROBE_NAMES.items():
        vs = probes[name]["versus_baseline"]
        what = f"The {label} probe"
        if vs["verdict"] is None:
            lines.append(f"{what} could not be scored ({vs['n']} users; a score needs two labels or more).")
        elif vs["verdict"] == "at chance":
            lines.append(
                f"{what} is at chance: its {vs['metric']} interval {interval(vs['ci95'])} overlaps the "
                f"{vs['baseline']} baseline's {interval(vs['baseline_ci95'])}, so on these {vs['n']} users "
                "the representation shows no knowledge of it."
            )
        elif vs["verdict"] == "worse":
            lines.append(f"{what} does worse than the {vs['baseline']} baseline: it adds nothing.")
    return lines


def _probe_table(probes: dict[str, Any]) -> list[str]:
    """One row per probe: headline score and its baseline, each with its 95% interval, and the verdict."""
    buy, cat, length = probes["purchase"], probes["category"], probes["length"]
    top = next(key for key in cat if key.startswith("top"))
    also = {
        "purchase": f"F1 {fmt(buy['f1'])}, positive rate {fmt(buy['positive_rate'])}",
        "category": f"{top.replace('_', ' ')} {fmt(cat[top])}; {cat['classes']} classes, "
        f"{cat['dropped_users']} users dropped",
        "length": f"MSE {fmt(length['mse'])} (mean predictor {fmt(length['baseline_mse'])})",
    }
    lines = [
        "| probe | n | score [95% CI] | baseline [95% CI] | verdict | also |",
        "|---|---:|---|---|---|---|",
    ]
    for name, label in PROBE_LABELS.items():
        vs = probes[name]["versus_baseline"]
        score = f"{vs['metric']} {fmt(vs['value'])} {interval(vs['ci95'])}"
        base = f"{vs['baseline']} {fmt(vs['baseline_value'])} {interval(vs['baseline_ci95'])}"
        verdict = VERDICTS.get(vs["verdict"], "n/a")
        lines.append(f"| {label} | {vs['n']} | {score} | {base} | {verdict} | {also[name]} |")
    return lines


def probes_section(probes: dict[str, Any]) -> list[str]:
    """Linear probes, geometry and stability of the model's representations (`evaluate --probes`)."""
    lines = ["## Representations", ""]
    if "skipped" in probes:
        return [*lines, f"Not evaluated: {probes['skipped']}.", ""]
    protocol = probes["protocol"]
    keys = ("examples", "labels", "probes", "split", "baselines", "intervals")
    lines += [f"- {key}: {protocol[key]}" for key in keys if key in protocol]
    lines += ["", *_probe_table(probes)]
    verdicts = probe_verdicts(probes)
    if verdicts:
        lines += ["", *verdicts]
    lines += [
        "",
        f"Geometry ({protocol['geometry']}):",
        "",
        *(f"- {key}: {fmt(value)}" for key, value in probes["geometry"].items()),
        "",
        f"Stability ({protocol['stability']}):",
        "",
        "| steps | n | p50 | p90 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("within_session", "session_boundary"):
        q = probes["stability"][name]
        cells = " | ".join(fmt(q[p]) for p in ("p50", "p90", "p99"))
        lines.append(f"| {name.replace('_', ' ')} | {q['n']} | {cells} |")
    return [*lines, "", f"Mean norm of the representations: {fmt(probes['stability']['mean_norm'])}.", ""]

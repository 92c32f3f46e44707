"""The scenario table of report.md and the terminal: each scenario beside its baseline."""

from __future__ import annotations

from typing import Any

from behavior_stream.evaluation.formatting import beats, fmt, interval

HEADLINE = {"search": "hit@", "cart": "hit@", "related": "hit@", "purchase_intent": "roc_auc"}
WHAT = {
    "search": "item clicked after a search, ranked given the query",
    "cart": "items carted or bought after a cart event (not already carted)",
    "related": "next distinct item of a session, given only the previous one",
    "purchase_intent": "purchase still to come in the current session",
}


def _metric_names(row: dict[str, Any]) -> list[str]:
    return [k for k, v in row.items() if isinstance(v, dict) and "model" in v]


def scenario_table(section: dict[str, Any]) -> str:
    """Markdown: per scenario and metric, model, baseline, difference [95% CI], and the verdict."""
    lines = [
        "| scenario | metric | model | baseline | model - baseline [95% CI] | n | beats baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in section.items():
        if row is None:
            lines.append(f"| {name} | - | - | - | no predictions in this data | 0 | - |")
            continue
        for metric in _metric_names(row):
            fig = row[metric]
            verdict = beats(fig["ci95"], lower_is_better=metric == "brier")
            lines.append(
                f"| {name} | {metric} | {fmt(fig['model'])} | {fmt(fig['baseline'])} | "
                f"{fmt(fig['difference'])} {interval(fig['ci95'])} | "
                f"{row['predictions']:,} | {verdict} |"
            )
    return "\n".join(lines)


def scenario_lines(section: dict[str, Any]) -> list[str]:
    """The report.md section: what each scenario predicts, its baseline, the table, the calibration curve."""
    lines = ["## Shopping scenarios", ""]
    for name, row in section.items():
        baseline = row["baseline"] if row else "-"
        lines.append(f"- **{name}**: {WHAT.get(name, name)}; baseline: {baseline}")
    lines += ["", scenario_table(section), ""]
    intent = section.get("purchase_intent")
    if intent:
        lines += [
            f"Purchase intent calibration ({intent['calibration']}, threshold {intent['threshold']:.4f}):",
            "",
            "| predicted bin | n | mean predicted | observed rate |",
            "|---|---|---|---|",
            *(
                f"| {b['bin']} | {b['n']} | {fmt(b['predicted'])} | {fmt(b['observed'])} |"
                for b in intent["calibration_curve"]
            ),
            "",
        ]
    return lines

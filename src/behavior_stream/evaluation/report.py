"""Human-readable evaluation output: report.md, tables and PNG plots, built from the metrics.json dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from behavior_stream.evaluation.formatting import beats, fmt, interval
from behavior_stream.evaluation.plots import (
    NO_PLOTS_NOTE,
    plot_by_length,
    plot_metric_at_k,
    plot_training,
    plotting_available,
)
from behavior_stream.evaluation.probe_report import probes_section
from behavior_stream.evaluation.scenario_report import scenario_lines

GRU4REC_NOTE = (
    "GRU4Rec compatibility: as in the GRU4Rec reference evaluation, test events whose item is not in "
    "the training catalog are removed from the test data before evaluating (not only skipped as targets), "
    "each test session is scored from its second remaining event, every item of the catalog is ranked, and "
    "Recall@20 / MRR@20 are micro-averaged over predictions. Ties: our rank is 1 + the number of OTHER items "
    "scoring >= the target, which equals the reference's `conservative` mode; its `standard` mode "
    "(1 + items scoring strictly higher, the default of the reference `run.py`) can only give equal or "
    "better numbers, and differs only when scores tie exactly."
)


def headline_k(metrics: dict[str, Any]) -> int:
    """K of the headline metrics: 20 when evaluated, else the largest K."""
    ks: list[int] = metrics["protocol"]["ks"]
    return 20 if 20 in ks else max(ks)


def _with_ci(row: dict[str, Any], name: str) -> str:
    ci = row.get("ci95", {}).get(name)
    shown = interval(ci) if ci else "n/a"
    return fmt(row.get(name)) if shown == "n/a" else f"{fmt(row.get(name))} {shown}"


def next_item_table(metrics: dict[str, Any]) -> str:
    """Markdown table, one row per scorer: Recall/MRR/NDCG at each K (95% CI at the headline K)."""
    ks: list[int] = metrics["protocol"]["ks"]
    head = headline_k(metrics)
    columns = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "ndcg")]
    extra = [f"coverage@{head}", f"popularity@{head}", "seconds_per_10k_predictions"]
    lines = [
        "| scorer | " + " | ".join([*columns, *extra[:2], "s / 10k"]) + " |",
        "|---|" + "---:|" * (len(columns) + len(extra)),
    ]
    for name, row in metrics["next_item"].items():
        cells = [_with_ci(row, c) if c.endswith(f"@{head}") else fmt(row.get(c)) for c in columns]
        cells += [fmt(row.get(c)) for c in extra[:2]] + [fmt(row.get(extra[2]), 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus_table(metrics: dict[str, Any]) -> str:
    """Markdown table, per baseline, of Recall/MRR/NDCG at the headline K: model, baseline, the paired
    difference with its 95% CI, and whether the model beats it; "" without a `versus` section."""
    versus = metrics.get("versus")
    if not versus:
        return ""
    k = headline_k(metrics)
    lines = [
        "| baseline | metric | model | baseline | model - baseline [95% CI] | beats |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, figures in versus["baselines"].items():
        for metric in (f"{m}@{k}" for m in ("recall", "mrr", "ndcg")):
            fig = figures[metric]
            cells = [fmt(fig["model"]), fmt(fig["baseline"])]
            cells += [f"{fmt(fig['difference'])} {interval(fig['ci95'])}", beats(fig["ci95"])]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _versus_section(metrics: dict[str, Any]) -> list[str]:
    protocol = metrics["protocol"]
    return [
        "## Model vs baselines (paired 95% CI)",
        "",
        f"{metrics['versus']['reference']} - baseline on the same predictions: 95% percentile CI of the "
        f"difference from {protocol['n_bootstrap']} paired cluster resamples of test sequences (seed "
        f"{protocol['seed']}). beats: yes when the interval is above zero, worse when below, no when it "
        "holds zero.",
        "",
        versus_table(metrics),
        "",
    ]


def purchase_table(metrics: dict[str, Any]) -> str:
    """Markdown table of purchase-prediction metrics, one row per predictor."""
    names = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
    lines = ["| predictor | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, row in metrics["purchase"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(n)) for n in names) + " |")
    return "\n".join(lines)


def breakdown_table(metrics: dict[str, Any]) -> str:
    """Markdown table of Recall@K / MRR@K (headline K) per session-prefix-length bucket and scorer."""
    k = headline_k(metrics)
    scorers = list(metrics["breakdown"])
    if not scorers:
        return ""
    buckets = metrics["breakdown"][scorers[0]]
    header = "| bucket | n | " + " | ".join(f"{s} R@{k} | {s} MRR@{k}" for s in scorers) + " |"
    lines = [header, "|---|---:|" + "---:|" * (2 * len(scorers))]
    for i, bucket in enumerate(buckets):
        cells = []
        for s in scorers:
            row = metrics["breakdown"][s][i]
            cells += [fmt(row[f"recall@{k}"]), fmt(row[f"mrr@{k}"])]
        lines.append(f"| {bucket['bucket']} | {bucket['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol_section(metrics: dict[str, Any]) -> list[str]:
    protocol, counts = metrics["protocol"], metrics["counts"]
    keys = ("task", "ranking", "ties", "unseen_items", "metrics", "bootstrap", "breakdown", "baselines")
    lines = ["## Protocol", "", *(f"- {key}: {protocol[key]}" for key in keys)]
    lines.append(
        f"- K: {protocol['ks']}; catalog: {protocol['catalog_items']:,} items; "
        f"{protocol['n_bootstrap']} bootstrap resamples, seed {protocol['seed']}"
    )
    if metrics["dataset"].get("format") == "gru4rec":
        lines += ["", GRU4REC_NOTE]
    lines += [
        "",
        "Counts: " + ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in counts.items()),
    ]
    return [*lines, ""]


def _purchase_section(metrics: dict[str, Any]) -> list[str]:
    protocol = metrics["protocol"]
    lines = [
        "## Purchase prediction",
        "",
        f"{protocol['purchase']} (threshold {protocol['threshold']}). Precision is 0 when nothing is "
        "predicted positive; ROC-AUC counts tied pairs as 1/2; Brier = mean squared error of the "
        "probability.",
        "",
        purchase_table(metrics) if metrics["purchase"] else "No purchase predictor was evaluated.",
        "",
    ]
    if metrics["counts"]["purchase_positives"] == 0:
        lines += ["The test split has no purchases: recall is 0 and ROC-AUC undefined.", ""]
    return lines


def write_report(metrics: dict[str, Any], out_dir: Path, history: list[dict[str, Any]] | None = None) -> Path:
    """Write report.md and its PNG plots (when matplotlib is installed) into `out_dir`; returns the
    report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plotting_available()
    k = headline_k(metrics)
    if plots:
        plot_metric_at_k(metrics, out_dir / "metric_at_k.png")
        plot_by_length(metrics, k, out_dir / "metric_by_length.png")
    lines = ["# Evaluation report", ""]
    if not plots:
        lines += [NO_PLOTS_NOTE, ""]
    lines += ["## Dataset", ""]
    lines += [*(f"- {key}: {value}" for key, value in metrics["dataset"].items()), ""]
    lines += _protocol_section(metrics)
    lines += [
        "## Next-item prediction",
        "",
        f"Model and baselines on the same predictions; 95% CIs at K={k}. Time = scoring + ranking "
        "seconds per 10k predictions.",
        "",
        next_item_table(metrics),
        "",
        *(["![metric@K](metric_at_k.png)", ""] if plots else []),
        *(_versus_section(metrics) if metrics.get("versus") else []),
        "## By session prefix length",
        "",
        breakdown_table(metrics),
        "",
        *(["![metric by length](metric_by_length.png)", ""] if plots else []),
    ]
    lines += _purchase_section(metrics)
    if "probes" in metrics:
        lines += probes_section(metrics["probes"])
    if metrics.get("scenarios"):
        lines += scenario_lines(metrics["scenarios"])
    if history and plots:
        plot_training(history, out_dir / "training_curves.png")
        lines += ["## Training", "", "![training curves](training_curves.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

"""Human-readable evaluation output: report.md, tables and PNG plots, built from the metrics.json dict."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from behavior_stream.evaluation.plots import (
    NO_PLOTS_NOTE,
    plot_by_length,
    plot_metric_at_k,
    plot_training,
    plotting_available,
)
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


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _with_ci(row: dict[str, Any], name: str) -> str:
    ci = row.get("ci95", {}).get(name)
    if not ci or any(v is None or math.isnan(v) for v in ci):
        return _fmt(row.get(name))
    return f"{_fmt(row.get(name))} [{ci[0]:.4f}, {ci[1]:.4f}]"


def _interval(ci: list[Any]) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return "n/a"
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


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
        cells = [_with_ci(row, c) if c.endswith(f"@{head}") else _fmt(row.get(c)) for c in columns]
        cells += [_fmt(row.get(c)) for c in extra[:2]] + [_fmt(row.get(extra[2]), 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _beats(ci: list[Any]) -> str:
    """yes: the interval of model - baseline is above zero; worse: below it; no: it holds zero."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return "n/a"
    return "yes" if ci[0] > 0 else ("worse" if ci[1] < 0 else "no")


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
            cells = [_fmt(fig["model"]), _fmt(fig["baseline"])]
            cells += [f"{_fmt(fig['difference'])} {_interval(fig['ci95'])}", _beats(fig["ci95"])]
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
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(n)) for n in names) + " |")
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
            cells += [_fmt(row[f"recall@{k}"]), _fmt(row[f"mrr@{k}"])]
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
                f"{what} is at chance: its {vs['metric']} interval {_interval(vs['ci95'])} overlaps the "
                f"{vs['baseline']} baseline's {_interval(vs['baseline_ci95'])}, so on these {vs['n']} users "
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
        "purchase": f"F1 {_fmt(buy['f1'])}, positive rate {_fmt(buy['positive_rate'])}",
        "category": f"{top.replace('_', ' ')} {_fmt(cat[top])}; {cat['classes']} classes, "
        f"{cat['dropped_users']} users dropped",
        "length": f"MSE {_fmt(length['mse'])} (mean predictor {_fmt(length['baseline_mse'])})",
    }
    lines = [
        "| probe | n | score [95% CI] | baseline [95% CI] | verdict | also |",
        "|---|---:|---|---|---|---|",
    ]
    for name, label in PROBE_LABELS.items():
        vs = probes[name]["versus_baseline"]
        score = f"{vs['metric']} {_fmt(vs['value'])} {_interval(vs['ci95'])}"
        base = f"{vs['baseline']} {_fmt(vs['baseline_value'])} {_interval(vs['baseline_ci95'])}"
        verdict = VERDICTS.get(vs["verdict"], "n/a")
        lines.append(f"| {label} | {vs['n']} | {score} | {base} | {verdict} | {also[name]} |")
    return lines


def _probes_section(probes: dict[str, Any]) -> list[str]:
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
        *(f"- {key}: {_fmt(value)}" for key, value in probes["geometry"].items()),
        "",
        f"Stability ({protocol['stability']}):",
        "",
        "| steps | n | p50 | p90 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("within_session", "session_boundary"):
        q = probes["stability"][name]
        cells = " | ".join(_fmt(q[p]) for p in ("p50", "p90", "p99"))
        lines.append(f"| {name.replace('_', ' ')} | {q['n']} | {cells} |")
    return [*lines, "", f"Mean norm of the representations: {_fmt(probes['stability']['mean_norm'])}.", ""]


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
        lines += _probes_section(metrics["probes"])
    if metrics.get("scenarios"):
        lines += scenario_lines(metrics["scenarios"])
    if history and plots:
        plot_training(history, out_dir / "training_curves.png")
        lines += ["## Training", "", "![training curves](training_curves.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

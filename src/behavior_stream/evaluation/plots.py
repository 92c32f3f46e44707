"""The evaluation's PNG plots (metric@K, by session length, training curves), from the metrics.json dict."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

# matplotlib (the `plot` extra) is imported only by the plotting functions: it is optional, and
# importing it would cost every user of the tables close to a second.
NO_PLOTS_NOTE = "No plots: matplotlib is not installed (`pip install 'behavior-stream[plot]'`)."


def plotting_available() -> bool:
    """Whether matplotlib is installed; without it `write_report` writes the report without plots."""
    return importlib.util.find_spec("matplotlib") is not None


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display


def plot_metric_at_k(metrics: dict[str, Any], path: Path) -> None:
    """Recall@K and MRR@K against K with 95% CI bars, one line per scorer."""
    _use_agg()
    import matplotlib.pyplot as plt

    ks: list[int] = metrics["protocol"]["ks"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("recall", "mrr"), strict=True):
        for name, row in metrics["next_item"].items():
            values = [row[f"{metric}@{k}"] for k in ks]
            cis = [row["ci95"][f"{metric}@{k}"] for k in ks]
            below = [
                max(v - lo, 0.0) if lo is not None else 0.0 for v, (lo, _) in zip(values, cis, strict=True)
            ]
            above = [
                max(hi - v, 0.0) if hi is not None else 0.0 for v, (_, hi) in zip(values, cis, strict=True)
            ]
            ax.errorbar(ks, values, yerr=[below, above], marker="o", capsize=3, label=name)
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric}@K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_by_length(metrics: dict[str, Any], k: int, path: Path) -> None:
    """Recall@`k` per session-prefix-length bucket, one line per scorer."""
    _use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in metrics["breakdown"].items():
        ax.plot([r["bucket"] for r in rows], [r[f"recall@{k}"] for r in rows], marker="o", label=name)
    ax.set_xlabel("events of the current session before the target")
    ax.set_ylabel(f"recall@{k}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training(history: list[dict[str, Any]], path: Path) -> None:
    """Per-epoch training curves: series named `*loss*` on the left, `valid*` on the right."""
    _use_agg()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    keys = sorted({k for h in history for k, v in h.items() if isinstance(v, int | float)})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key in keys:
        if "loss" not in key and not key.startswith("valid"):
            continue  # epoch numbers, timings
        ax = axes[0] if "loss" in key else axes[1]
        ax.plot(epochs, [h.get(key, math.nan) for h in history], marker="o", label=key)
    for ax, title in zip(axes, ("loss", "validation"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Paired cluster bootstrap of metric differences between two models, and comparison rows.

A statistic maps an integer weight per cluster (how often the resample drew it) to metric values,
so one draw of clusters is applied to both models: the CI is of the paired difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from behavior_stream.evaluation import metrics as M

Stat = Callable[[np.ndarray], np.ndarray]  # integer weight per cluster (n_clusters,) -> metric values (m,)
Better = Literal["higher", "lower", "neither"]


def paired_bootstrap(
    n_clusters: int, stat_a: Stat, stat_b: Stat, n_resamples: int, seed: int, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI (low, high) of stat_b - stat_a, both evaluated on the same cluster resamples."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    m = len(stat_a(np.ones(n_clusters, np.int64)))
    low, high = np.full(m, np.nan), np.full(m, np.nan)
    if n_clusters == 0:
        return low, high
    rng = np.random.default_rng(seed)
    uniform = np.full(n_clusters, 1.0 / n_clusters)
    draws = (rng.multinomial(n_clusters, uniform) for _ in range(n_resamples))
    diffs = np.array([stat_b(w) - stat_a(w) for w in draws]).reshape(n_resamples, m)
    alpha = (1.0 - level) / 2.0
    # A metric undefined on some resamples (AUC with one class drawn) is taken over the others.
    ok = np.isfinite(diffs).any(axis=0)
    if ok.any():
        low[ok], high[ok] = np.nanquantile(diffs[:, ok], [alpha, 1.0 - alpha], axis=0)
    return low, high


def mean_stat(values: np.ndarray, cluster_of: np.ndarray) -> Stat:
    """Weighted means of per-prediction `values` (n, m) whose clusters are `cluster_of` (n,)."""

    def stat(w: np.ndarray) -> np.ndarray:
        weights = w[cluster_of].astype(np.float64)  # (n,)
        total = weights.sum()
        return weights @ values / total if total else np.full(values.shape[1], np.nan)

    return stat


def classification_stat(
    labels: np.ndarray, probs: np.ndarray, cluster_of: np.ndarray, threshold: float
) -> Stat:
    """[roc_auc, f1, brier] of the resampled predictions."""

    def stat(w: np.ndarray) -> np.ndarray:
        reps = w[cluster_of]
        m = M.classification_metrics(np.repeat(labels, reps), np.repeat(probs, reps), threshold)
        return np.array([m["roc_auc"], m["f1"], m["brier"]])

    return stat


def quantile_stat(values: np.ndarray, cluster_of: np.ndarray, quantiles: Sequence[float]) -> Stat:
    """Quantiles of the resampled per-step values."""

    def stat(w: np.ndarray) -> np.ndarray:
        sample = np.repeat(values, w[cluster_of])
        return np.quantile(sample, quantiles) if sample.size else np.full(len(quantiles), np.nan)

    return stat


def row(
    group: str, metric: str, a: float, b: float, ci: tuple[float, float] | None, better: Better
) -> dict[str, Any]:
    """One comparison row; significant = the 95% CI of B - A excludes 0 (None without a CI)."""
    ci_ok = ci is not None and all(np.isfinite(ci))
    significant = bool(ci[0] > 0 or ci[1] < 0) if ci is not None and ci_ok else None
    winner = None
    if significant and better != "neither":
        winner = "B" if (b > a) == (better == "higher") else "A"
    return {
        "group": group,
        "metric": metric,
        "a": float(a),
        "b": float(b),
        "diff": float(b - a),
        "ci95": [float(ci[0]), float(ci[1])] if ci is not None and ci_ok else None,
        "significant": significant,
        "better": better,
        "winner": winner,
    }


def paired_rows(
    group: str,
    names: Sequence[str],
    better: Sequence[Better],
    stats: tuple[Stat, Stat],
    n_clusters: int,
    n_resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Rows of the metrics computed by a (model A, model B) pair of stats over `n_clusters` clusters."""
    ones = np.ones(n_clusters, np.int64)
    a, b = stats[0](ones), stats[1](ones)
    low, high = paired_bootstrap(n_clusters, *stats, n_resamples, seed)
    return [row(group, name, a[j], b[j], (low[j], high[j]), better[j]) for j, name in enumerate(names)]

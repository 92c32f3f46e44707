"""The probes' scores, each beside its baseline with 95% intervals and a verdict.

`probes.fit_probes` gives out-of-fold predictions; this module turns them into the figures
`evaluate --probes` reports: ROC-AUC against a constant score for purchase, accuracy against
the majority class for category, MAE against the mean for length. The intervals are percentile
bootstraps over probe users, the probe's and its baseline's from the same resamples, and a probe
is at chance when the two overlap (see `probes.PROTOCOL`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.probes import ProbeConfig, ProbePredictions


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _interval(values: np.ndarray) -> list[float]:
    """The 95% percentile interval of bootstrap values; resamples where the figure is undefined (an AUC
    of a resample with one class) are left out, and with none left it is [NaN, NaN]."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return [float("nan"), float("nan")]
    low, high = np.percentile(finite, [2.5, 97.5])
    return [float(low), float(high)]


def _resamples(n: int, cfg: ProbeConfig, probe: int) -> np.ndarray:
    """(n_bootstrap, n) indices drawn with replacement; each probe has its own stream, so the number of
    users one probe has does not change another's draws."""
    rng = np.random.default_rng([cfg.seed, probe])
    return rng.integers(0, n, size=(cfg.n_bootstrap, n)) if n else np.zeros((cfg.n_bootstrap, 0), np.int64)


def versus_baseline(
    metric: str,
    value: float,
    ci95: list[float],
    baseline: str,
    baseline_value: float,
    baseline_ci95: list[float],
    higher_is_better: bool,
    n: int,
) -> dict[str, Any]:
    """A probe's headline score beside its baseline, and the verdict: `at_chance` when the two 95%
    intervals overlap (the data cannot tell them apart), else better or worse than the baseline."""
    bounds = [*ci95, *baseline_ci95]
    if not all(math.isfinite(v) for v in (value, baseline_value, *bounds)):
        at_chance, verdict = None, None
    else:
        at_chance = ci95[0] <= baseline_ci95[1] and baseline_ci95[0] <= ci95[1]
        above = ci95[0] > baseline_ci95[1]
        verdict = "at chance" if at_chance else "better" if above == higher_is_better else "worse"
    return {
        "metric": metric,
        "value": value,
        "ci95": ci95,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "baseline_ci95": baseline_ci95,
        "at_chance": at_chance,
        "verdict": verdict,  # "better" / "worse" than the baseline, "at chance", None when undefined
        "n": n,
    }


def _purchase_versus(pred: ProbePredictions, cfg: ProbeConfig) -> dict[str, Any]:
    """ROC-AUC against a constant score (0.5 exactly: every positive-negative pair ties)."""
    labels, probs = pred.purchase_label, pred.purchase_prob
    draws = _resamples(len(labels), cfg, 0)
    aucs = np.array([M.roc_auc(labels[rows], probs[rows]) for rows in draws])
    auc = M.roc_auc(labels, probs)
    return versus_baseline(
        "roc_auc", auc, _interval(aucs), "constant score", 0.5, [0.5, 0.5], True, len(labels)
    )


def _paired_versus(
    metric: str,
    values: np.ndarray,
    base: np.ndarray,
    baseline: str,
    higher: bool,
    cfg: ProbeConfig,
    probe: int,
) -> dict[str, Any]:
    """Mean of per-user `values` against the mean of per-user `base`, both over the same resamples."""
    draws = _resamples(len(values), cfg, probe)
    boot = values[draws].mean(axis=1) if len(values) else np.full(cfg.n_bootstrap, np.nan)
    boot_base = base[draws].mean(axis=1) if len(base) else np.full(cfg.n_bootstrap, np.nan)
    return versus_baseline(
        metric,
        _mean(values),
        _interval(boot),
        baseline,
        _mean(base),
        _interval(boot_base),
        higher,
        len(values),
    )


def probe_metrics(pred: ProbePredictions, top_k: int = 5, cfg: ProbeConfig | None = None) -> dict[str, Any]:
    """The probe scores: purchase (classification metrics, threshold 0.5), category, length; each with
    `versus_baseline`, its headline score and its baseline with 95% intervals (`cfg`: seed, resamples)."""
    cfg = cfg or ProbeConfig(top_k=top_k)
    err = pred.length_pred - pred.length_label
    base_err = pred.length_baseline - pred.length_label
    hit, majority = pred.category_hit.astype(np.float64), pred.category_majority_hit.astype(np.float64)
    category = _paired_versus("accuracy", hit, majority, "majority class", True, cfg, 1)
    if pred.n_classes < 2:
        # One class left: the majority is always right, so the probe has nothing to be judged on.
        category |= {"at_chance": None, "verdict": None}
    return {
        "purchase": {
            **M.classification_metrics(pred.purchase_label, pred.purchase_prob),
            "n": len(err),
            "versus_baseline": _purchase_versus(pred, cfg),
        },
        "category": {
            "accuracy": _mean(pred.category_hit),
            f"top{top_k}_accuracy": _mean(pred.category_top_k),
            "majority_accuracy": _mean(pred.category_majority_hit),
            "n": len(pred.category_rows),
            "classes": pred.n_classes,
            "dropped_users": pred.dropped,
            "versus_baseline": category,
        },
        "length": {
            "mae": _mean(np.abs(err)),
            "mse": _mean(err**2),
            "baseline_mae": _mean(np.abs(base_err)),
            "baseline_mse": _mean(base_err**2),
            "mean_length": _mean(pred.length_label),
            "n": len(err),
            "versus_baseline": _paired_versus(
                "mae", np.abs(err), np.abs(base_err), "mean length", False, cfg, 2
            ),
        },
    }

"""Linear probes on frozen user representations: what does the state at a session boundary know?

Dataset: one example per user with history before the test period and a session that starts in
it. The label session is the user's first session that STARTS in the test period (the rule of
`schema.sessions` with the model's `session_gap_ms`); X is the representation after every event before it
(the history, plus any test events that continue a session begun before the split).
Labels: purchase in that session (0/1), the category of its first item event (multiclass;
classes with fewer than `min_class_count` examples are dropped, as are users without a known
category), and its length in events.

Probes are fixed-regularisation linear models on standardised features, so two checkpoints are
compared on equal terms: LogisticRegression(C=1, class_weight="balanced") for purchase,
LogisticRegression(C=1) for category, Ridge(alpha=1) for length. Scores are out-of-fold: users
are split in two halves by a seeded hash of the user id, each half is predicted by the probe
fitted on the other, and metrics are computed over all users' held-out predictions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from behavior_stream.data.splits import group_by_user
from behavior_stream.evaluation import metrics as M
from behavior_stream.schema.events import Event, EventType
from behavior_stream.schema.sessions import is_new_session
from behavior_stream.schema.vocab import stable_hash

PROTOCOL = {
    "examples": "users with history before the test period and a session starting in it; label session = "
    "the first such session; X = representation after every earlier event of the user",
    "labels": "purchase in the session (0/1); category of its first item event (classes with fewer than "
    "min_class_count users dropped); session length in events",
    "probes": "standardised features; LogisticRegression(C=1, class_weight=balanced) for purchase, "
    "LogisticRegression(C=1) for category, Ridge(alpha=1) for length",
    "split": "2-fold cross-fitting over users (halves by a seeded hash of the user id); every score is "
    "out-of-fold",
    "baselines": "purchase: a constant score (ROC-AUC 0.5); category: the other fold's majority class; "
    "length: the other fold's mean",
    "intervals": "95% percentile bootstrap over probe users (one example per user, n_bootstrap resamples, "
    "seeded), the probe's score and its baseline's from the same resamples; a probe is at chance when "
    "its interval overlaps its baseline's",
}


@dataclass(frozen=True)
class ProbeConfig:
    """Fixed probe settings (the same for every checkpoint)."""

    seed: int = 0
    n_bootstrap: int = 1000  # resamples of the probe users for each probe's 95% interval
    min_class_count: int = 5
    top_k: int = 5
    c: float = 1.0
    alpha: float = 1.0
    max_iter: int = 2000


@dataclass(frozen=True)
class ProbeExample:
    """One user's probe input (the events before the label session) and labels."""

    user: str
    prefix: tuple[Event, ...]
    purchase: bool
    category: str | None
    length: int


def probe_examples(
    history: Sequence[Event], test: Sequence[Event], categories: dict[str, str], session_gap_ms: int
) -> list[ProbeExample]:
    """The probe dataset (users in first-test-appearance order); see the module docstring."""
    by_ts = attrgetter("ts")
    prefixes = group_by_user(sorted(history, key=by_ts))
    out = []
    for user, events in group_by_user(sorted(test, key=by_ts)).items():
        before = prefixes.get(user, [])
        seq = [*before, *events]
        boundaries = [
            i
            for i in range(max(len(before), 1), len(seq))
            if is_new_session(seq[i - 1], seq[i], session_gap_ms)
        ]
        if not before or not boundaries:
            continue
        start = boundaries[0]
        end = boundaries[1] if len(boundaries) > 1 else len(seq)
        session = seq[start:end]
        first_item = next((e.item_id for e in session if e.item_id is not None), None)
        out.append(
            ProbeExample(
                user=user,
                prefix=tuple(seq[:start]),
                purchase=any(e.type is EventType.PURCHASE for e in session),
                category=categories.get(first_item) if first_item is not None else None,
                length=len(session),
            )
        )
    return out


def user_folds(users: Sequence[str], seed: int) -> np.ndarray:
    """Fold 0/1 of each user: users ordered by a seeded hash of their id, then alternately assigned,
    so the halves differ by at most one user and do not depend on the input order."""
    order = sorted(range(len(users)), key=lambda i: (stable_hash(f"{seed}:{users[i]}"), users[i]))
    folds = np.empty(len(users), np.int64)
    folds[order] = np.arange(len(users)) % 2
    return folds


@dataclass(frozen=True)
class ProbePredictions:
    """Out-of-fold predictions of every probe, per user (for metrics and paired bootstraps)."""

    purchase_label: np.ndarray  # (n,) bool
    purchase_prob: np.ndarray  # (n,) float64
    length_label: np.ndarray  # (n,) float64
    length_pred: np.ndarray  # (n,) float64
    length_baseline: np.ndarray  # (n,) float64: the other fold's mean length
    category_rows: np.ndarray  # (m,) int64 users with a kept category
    category_hit: np.ndarray  # (m,) bool: top-1 correct
    category_top_k: np.ndarray  # (m,) bool: label among the top_k classes
    category_majority_hit: np.ndarray  # (m,) bool: the other fold's majority class is correct
    n_classes: int
    dropped: int  # users without a category or in a rare class


def _proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, cfg: ProbeConfig, balanced: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(classes, probabilities (n_test, n_classes)); a single training class predicts itself."""
    # sklearn here and in fit_probes, not at the top: it takes a second or two to import, and the
    # modules importing this one (for ProbeConfig, probe_examples) mostly never fit a probe.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y_train)
    if len(classes) < 2:
        return classes, np.ones((len(x_test), 1))
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=cfg.c, max_iter=cfg.max_iter, class_weight="balanced" if balanced else None),
    )
    probe.fit(x_train, y_train)
    return probe.classes_, probe.predict_proba(x_test)


def fit_probes(x: np.ndarray, examples: Sequence[ProbeExample], cfg: ProbeConfig) -> ProbePredictions:
    """Cross-fitted purchase, category and length probes on representations `x` (n, dim)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(examples)
    if x.shape[0] != n or n < 4:
        raise ValueError(f"fit_probes needs >= 4 examples and one row each, got {x.shape} for {n}")
    folds = user_folds([e.user for e in examples], cfg.seed)
    buy = np.array([e.purchase for e in examples], dtype=bool)
    length = np.array([e.length for e in examples], dtype=np.float64)
    counts = Counter(e.category for e in examples if e.category is not None)
    rows = np.array(
        [
            i
            for i, e in enumerate(examples)
            if e.category is not None and counts[e.category] >= cfg.min_class_count
        ],
        dtype=np.int64,
    )
    cats = np.array([examples[i].category for i in rows], dtype=object)
    prob = np.zeros(n)
    length_pred, length_base = np.zeros(n), np.zeros(n)
    hit, top, majority = (np.zeros(len(rows), dtype=bool) for _ in range(3))
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        classes, p = _proba(x[train], buy[train], x[test], cfg, balanced=True)
        prob[test] = p[:, list(classes).index(True)] if True in classes else 0.0
        ridge = make_pipeline(StandardScaler(), Ridge(alpha=cfg.alpha)).fit(x[train], length[train])
        length_pred[test] = ridge.predict(x[test])
        length_base[test] = length[train].mean()
        c_train, c_test = folds[rows] != fold, folds[rows] == fold
        if c_train.any() and c_test.any():
            classes, p = _proba(x[rows[c_train]], cats[c_train], x[rows[c_test]], cfg, balanced=False)
            order = np.argsort(-p, axis=1, kind="stable")[:, : cfg.top_k]  # (m_test, top_k)
            ranked = classes[order]
            hit[c_test] = ranked[:, 0] == cats[c_test]
            top[c_test] = (ranked == cats[c_test][:, None]).any(axis=1)
            values, freq = np.unique(cats[c_train], return_counts=True)
            majority[c_test] = cats[c_test] == values[np.argmax(freq)]
    return ProbePredictions(
        purchase_label=buy,
        purchase_prob=prob,
        length_label=length,
        length_pred=length_pred,
        length_baseline=length_base,
        category_rows=rows,
        category_hit=hit,
        category_top_k=top,
        category_majority_hit=majority,
        n_classes=len(set(cats.tolist())),
        dropped=n - len(rows),
    )


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

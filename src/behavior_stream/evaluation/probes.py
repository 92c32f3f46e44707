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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from behavior_stream.data.splits import group_by_user
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

"""Probe datasets (which session, which labels) and the cross-fitted linear probes on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from behavior_stream.evaluation.probes import (
    ProbeConfig,
    ProbeExample,
    fit_probes,
    probe_examples,
    probe_metrics,
    user_folds,
)
from behavior_stream.schema.events import Event, EventType, make_event

T0 = 1_700_000_000_000
MIN = 60_000
GAP = 30 * MIN
CATS = {"shoe1": "shoes", "shoe2": "shoes", "hat1": "hats"}


def ev(user: str, minute: int, item: str | None = None, kind: EventType = EventType.CLICK) -> Event:
    if item is None:
        return make_event(user, EventType.SEARCH, T0 + minute * MIN, query="red shoes")
    return make_event(user, kind, T0 + minute * MIN, item_id=item)


def test_label_session_is_the_first_session_starting_in_the_test_period() -> None:
    history = [ev("a", 0, "hat1"), ev("a", 5, "shoe1"), ev("b", 0, "hat1"), ev("c", 0, "shoe2")]
    test = [
        # a: continues its session 10 min later, then a new session 2 hours later
        ev("a", 15, "hat1"),
        ev("a", 135),
        ev("a", 136, "shoe2"),
        ev("a", 140, "shoe2", EventType.PURCHASE),
        ev("a", 400, "hat1"),
        # b: a new session straight away, no purchase, uncategorised item
        ev("b", 100, "mystery"),
        # c: only continues its session -> no label session
        ev("c", 20, "shoe1"),
        # d: no history -> no representation to probe
        ev("d", 500, "hat1"),
    ]
    examples = {e.user: e for e in probe_examples(history, test, CATS, GAP)}
    assert set(examples) == {"a", "b"}
    a = examples["a"]
    assert [e.ts for e in a.prefix] == [T0, T0 + 5 * MIN, T0 + 15 * MIN]  # the continuing event is context
    assert a.purchase and a.length == 3
    assert a.category == "shoes"  # the first ITEM event (the search has no item)
    b = examples["b"]
    assert not b.purchase and b.length == 1 and b.category is None and len(b.prefix) == 1


def test_session_ids_decide_boundaries_when_present() -> None:
    history = [make_event("u", EventType.CLICK, T0, item_id="hat1", session_id="s1")]
    # One minute later but a different session id: a new session for the probe.
    test = [make_event("u", EventType.CLICK, T0 + MIN, item_id="shoe1", session_id="s2")]
    (example,) = probe_examples(history, test, CATS, GAP)
    assert example.length == 1 and example.category == "shoes"


def test_user_folds_are_balanced_halves_independent_of_order() -> None:
    users = [f"user{i}" for i in range(200)]
    folds = user_folds(users, 0)
    assert folds.sum() == 100  # exact halves
    np.testing.assert_array_equal(user_folds(users[::-1], 0), folds[::-1])  # order-independent
    assert not np.array_equal(user_folds(users, 1), folds)


def examples_from(purchase: np.ndarray, category: list[str | None], length: np.ndarray) -> list[ProbeExample]:
    return [
        ProbeExample(f"user{i}", (), bool(p), c, int(n))
        for i, (p, c, n) in enumerate(zip(purchase, category, length, strict=True))
    ]


def test_perfectly_separable_labels_get_perfect_probe_scores() -> None:
    rng = np.random.default_rng(0)
    n = 90
    purchase = np.arange(n) % 3 == 0
    classes = ["shoes", "hats", "bags"]
    category: list[str | None] = [classes[i % 3] for i in range(n)]
    length = rng.integers(1, 30, size=n)
    x = np.zeros((n, 5))
    x[:, 0] = np.where(purchase, 1.0, -1.0) + 0.01 * rng.normal(size=n)
    x[np.arange(n), 1 + np.arange(n) % 3] = 5.0  # one dimension per category
    x[:, 4] = length
    pred = fit_probes(x, examples_from(purchase, category, length), ProbeConfig())
    scores = probe_metrics(pred)
    assert scores["purchase"]["roc_auc"] == 1.0 and scores["purchase"]["f1"] == 1.0
    assert scores["category"]["accuracy"] == 1.0 and scores["category"]["top5_accuracy"] == 1.0
    assert scores["category"]["classes"] == 3 and scores["category"]["n"] == n
    assert scores["category"]["majority_accuracy"] < 0.5
    assert scores["length"]["mae"] < 0.1 * scores["length"]["baseline_mae"]
    assert scores["length"]["mse"] < scores["length"]["baseline_mse"]


def test_uninformative_features_score_at_chance_and_rare_classes_are_dropped() -> None:
    n = 60
    purchase = np.arange(n) % 2 == 0
    # Two frequent classes, three singletons and two users without a category.
    frequent: list[str | None] = ["a" if i % 2 else "b" for i in range(n - 5)]
    category = [*frequent, "x", "y", "z", None, None]
    pred = fit_probes(np.zeros((n, 3)), examples_from(purchase, category, np.full(n, 4)), ProbeConfig())
    scores = probe_metrics(pred)
    assert scores["purchase"]["roc_auc"] == 0.5  # every probability ties
    assert scores["category"]["n"] == n - 5 and scores["category"]["dropped_users"] == 5
    assert scores["category"]["classes"] == 2
    assert scores["category"]["top5_accuracy"] == 1.0  # only two classes to rank
    assert scores["length"]["mae"] == pytest.approx(0.0, abs=1e-9)  # constant label, predicted exactly


def test_a_training_fold_without_positives_predicts_zero_instead_of_failing() -> None:
    users = [f"user{i}" for i in range(40)]
    folds = user_folds(users, 0)
    purchase = (folds == 0) & (np.arange(40) % 2 == 0)  # positives only in fold 0
    examples = [ProbeExample(u, (), bool(p), None, 2) for u, p in zip(users, purchase, strict=True)]
    pred = fit_probes(np.random.default_rng(0).normal(size=(40, 4)), examples, ProbeConfig())
    # Fold 0 is predicted by a probe fitted on fold 1, which saw no purchase.
    assert np.all(pred.purchase_prob[folds == 0] == 0.0)
    scores = probe_metrics(pred)
    assert scores["category"]["n"] == 0 and math.isnan(scores["category"]["accuracy"])


def test_fit_probes_rejects_mismatched_inputs() -> None:
    examples = examples_from(np.zeros(6, bool), [None] * 6, np.ones(6))
    with pytest.raises(ValueError, match="one row each"):
        fit_probes(np.zeros((5, 2)), examples, ProbeConfig())

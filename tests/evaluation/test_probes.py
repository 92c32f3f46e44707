"""Probe datasets (which session, which labels) and the cross-fitted linear probes on known cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from behavior_stream.cli.heldout import history_and_test
from behavior_stream.data.loaders import Format, catalog_sidecar, load_events, write_jsonl
from behavior_stream.data.splits import SplitUnit
from behavior_stream.evaluation.probe_scores import probe_metrics
from behavior_stream.evaluation.probes import (
    ProbeConfig,
    ProbeExample,
    fit_probes,
    probe_examples,
    user_folds,
)
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.simulate.generator import catalog_path_for, generate

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


# --- Each probe beside its baseline, with 95% intervals, and the verdict ---


def test_probes_that_know_their_labels_beat_their_baselines() -> None:
    rng = np.random.default_rng(0)
    n = 90
    purchase = np.arange(n) % 3 == 0
    category: list[str | None] = [("shoes", "hats", "bags")[i % 3] for i in range(n)]
    length = rng.integers(1, 30, size=n)
    x = np.zeros((n, 5))
    x[:, 0] = np.where(purchase, 1.0, -1.0) + 0.01 * rng.normal(size=n)
    x[np.arange(n), 1 + np.arange(n) % 3] = 5.0
    x[:, 4] = length
    cfg = ProbeConfig(n_bootstrap=200)
    scores = probe_metrics(fit_probes(x, examples_from(purchase, category, length), cfg), cfg.top_k, cfg)
    for name, metric in (("purchase", "roc_auc"), ("category", "accuracy"), ("length", "mae")):
        vs = scores[name]["versus_baseline"]
        assert vs["metric"] == metric and vs["value"] == scores[name][metric] and vs["n"] == n
        assert vs["ci95"][0] <= vs["value"] <= vs["ci95"][1]
        assert vs["verdict"] == "better" and vs["at_chance"] is False, (name, vs)
    assert scores["purchase"]["versus_baseline"]["baseline_ci95"] == [0.5, 0.5]  # a constant score
    category_vs = scores["category"]["versus_baseline"]
    assert category_vs["baseline"] == "majority class"
    assert category_vs["baseline_value"] == scores["category"]["majority_accuracy"]
    length_vs = scores["length"]["versus_baseline"]
    assert length_vs["baseline_value"] == scores["length"]["baseline_mae"]
    assert length_vs["ci95"][1] < length_vs["baseline_ci95"][0]  # lower error is better


def test_probes_on_noise_are_at_chance_and_undefined_ones_say_so() -> None:
    rng = np.random.default_rng(1)
    n = 80
    purchase = rng.random(n) < 0.4
    category: list[str | None] = [("a", "b")[int(v)] for v in rng.random(n) < 0.5]
    length = rng.integers(1, 10, size=n)
    cfg = ProbeConfig(n_bootstrap=200, seed=3)
    pred = fit_probes(rng.normal(size=(n, 4)), examples_from(purchase, category, length), cfg)
    scores = probe_metrics(pred, cfg.top_k, cfg)
    for name in ("purchase", "category"):
        assert scores[name]["versus_baseline"]["verdict"] == "at chance", scores[name]["versus_baseline"]
        assert scores[name]["versus_baseline"]["at_chance"] is True
    # The intervals are seeded: the same predictions give the same document.
    assert probe_metrics(pred, cfg.top_k, cfg) == scores
    # No category at all: the comparison is undefined, not "at chance".
    none = probe_metrics(
        fit_probes(np.zeros((8, 2)), examples_from(purchase[:8], [None] * 8, length[:8]), cfg)
    )
    assert none["category"]["versus_baseline"]["verdict"] is None and none["category"]["n"] == 0


# --- Categories reach the probes from each format's side data ---


def category_probe_n(
    data: Path, fmt: Format, unit: SplitUnit = "event", purchases: Path | None = None
) -> int:
    """Through the command's own loading and split (`cli.heldout.history_and_test`), probes fitted on
    random features: how many users the category probe scored."""
    history, test, categories, _ = history_and_test(data, fmt, None, purchases, (0.1, 0.3, unit))
    assert categories, f"{fmt}: no item categories loaded"
    examples = probe_examples(history, test, categories, GAP)
    x = np.random.default_rng(0).normal(size=(len(examples), 4))
    cfg = ProbeConfig(min_class_count=2, n_bootstrap=50)
    scores = probe_metrics(fit_probes(x, examples, cfg), cfg.top_k, cfg)
    return int(scores["category"]["n"])


def test_category_probe_reads_taobao_category_column(tmp_path: Path, shared_data: Path) -> None:
    with (shared_data / "taobao" / "UserBehavior_prefix.csv").open() as f:
        head = [next(f) for _ in range(6000)]  # about 60 users, grouped by user in the file
    (tmp_path / "taobao.csv").write_text("".join(head))
    assert category_probe_n(tmp_path / "taobao.csv", "taobao") > 0


def test_category_probe_reads_diginetica_product_categories(tmp_path: Path) -> None:
    # Each Diginetica session is a user, so a "next session" exists only where a session pauses for more
    # than 30 minutes: 30 sessions of the same day, 7 views, a pause of over two hours, 3 more views; the
    # test part (the last 30% of events) is what follows the pause.
    rows = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(30):
        for i in range(10):
            minutes = s + 5 * i + (200 if i >= 7 else 0)
            rows.append(f"{s};NA;{100 + (s + i) % 6};{minutes * 60_000};2016-05-01")
    (tmp_path / "views.csv").write_text("\n".join(rows) + "\n")
    cats = "\n".join(f"{100 + i};{i % 2}" for i in range(6))
    (tmp_path / "product-categories.csv").write_text(f"itemId;categoryId\n{cats}\n")
    assert category_probe_n(tmp_path / "views.csv", "diginetica") > 0


def test_category_probe_reads_the_generators_catalog_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "gen.jsonl.gz"
    generate(users=40, items=30, events=1500, seed=0, out=out)
    assert catalog_sidecar(out) == catalog_path_for(out) and catalog_sidecar(out).exists()
    assert category_probe_n(out, "jsonl") > 0
    # Without the sidecar a JSONL log has no categories: nothing to label the probe with.
    catalog_sidecar(out).unlink()
    assert load_events(out, "jsonl").categories == {}


def test_a_broken_catalog_sidecar_costs_the_categories_only(tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    write_jsonl([ev("a", 0, "shoe1"), ev("a", 1, "hat1")], out)
    catalog_sidecar(out).write_text("{not json")
    loaded = load_events(out, "jsonl")
    assert len(loaded.events) == 2 and loaded.categories == {}
    catalog_sidecar(out).write_text('[{"item_id": "shoe1", "category": "shoes"}, {"item_id": "x"}, 3]')
    assert load_events(out, "jsonl").categories == {"shoe1": "shoes"}


def test_a_category_probe_with_one_class_is_not_judged() -> None:
    # The majority is always right with one class: "at chance" would say nothing, so there is no verdict.
    n = 20
    cfg = ProbeConfig(n_bootstrap=50)
    pred = fit_probes(np.zeros((n, 2)), examples_from(np.arange(n) % 2 == 0, ["a"] * n, np.ones(n)), cfg)
    vs = probe_metrics(pred, cfg.top_k, cfg)["category"]["versus_baseline"]
    assert vs["n"] == n and vs["verdict"] is None and vs["at_chance"] is None

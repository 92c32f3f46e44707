"""Paired cluster bootstrap of differences, the resampling statistics, and comparison rows."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.evaluation import metrics as M
from behavior_stream.evaluation.paired import (
    classification_stat,
    mean_stat,
    paired_bootstrap,
    paired_rows,
    quantile_stat,
    row,
)


def test_mean_stat_is_a_ratio_of_sums_over_cluster_weights() -> None:
    values = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cluster_of = np.array([0, 0, 1])
    stat = mean_stat(values, cluster_of)
    np.testing.assert_allclose(stat(np.ones(2, np.int64)), values.mean(axis=0))
    # Cluster 1 drawn twice, cluster 0 never: only the third prediction, counted twice.
    np.testing.assert_allclose(stat(np.array([0, 2])), [1.0, 1.0])
    assert np.isnan(stat(np.zeros(2, np.int64))).all()


def test_classification_and_quantile_stats_match_the_plain_metrics_without_resampling() -> None:
    rng = np.random.default_rng(0)
    labels, probs = rng.random(50) < 0.3, rng.random(50)
    clusters = np.arange(50) // 5
    got = classification_stat(labels, probs, clusters, 0.5)(np.ones(10, np.int64))
    plain = M.classification_metrics(labels, probs, 0.5)
    np.testing.assert_allclose(got, [plain["roc_auc"], plain["f1"], plain["brier"]])
    values = rng.normal(size=50)
    np.testing.assert_allclose(
        quantile_stat(values, clusters, (0.5, 0.9))(np.ones(10, np.int64)), np.quantile(values, [0.5, 0.9])
    )


def test_identical_models_differ_by_exactly_zero() -> None:
    values = np.random.default_rng(1).random((30, 2))
    stat = mean_stat(values, np.arange(30))
    low, high = paired_bootstrap(30, stat, stat, 200, seed=0)
    np.testing.assert_array_equal(low, 0.0)
    np.testing.assert_array_equal(high, 0.0)
    rows = paired_rows("g", ["x", "y"], ["higher", "lower"], (stat, stat), 30, 200, 0)
    assert [r["significant"] for r in rows] == [False, False] and all(r["winner"] is None for r in rows)


def test_a_consistent_difference_is_significant_and_paired() -> None:
    rng = np.random.default_rng(2)
    base = rng.random((200, 1))  # large per-cluster spread ...
    a, b = mean_stat(base, np.arange(200)), mean_stat(base + 0.01, np.arange(200))  # ... tiny shift
    low, high = paired_bootstrap(200, a, b, 300, seed=0)
    # Pairing cancels the spread: the difference is exactly the shift on every resample.
    assert low[0] == pytest.approx(0.01) and high[0] == pytest.approx(0.01)
    (higher,) = paired_rows("g", ["recall"], ["higher"], (a, b), 200, 300, 0)
    assert higher["significant"] and higher["winner"] == "B" and higher["diff"] == pytest.approx(0.01)
    (lower,) = paired_rows("g", ["mae"], ["lower"], (a, b), 200, 300, 0)
    assert lower["winner"] == "A"


def test_noise_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    a = mean_stat(rng.random((100, 1)), np.arange(100))
    b = mean_stat(rng.random((100, 1)), np.arange(100))
    (r,) = paired_rows("g", ["x"], ["higher"], (a, b), 100, 500, 0)
    assert r["ci95"][0] < r["diff"] < r["ci95"][1]
    assert r["significant"] == (r["ci95"][0] > 0 or r["ci95"][1] < 0)


def test_row_without_a_usable_interval_has_no_significance() -> None:
    assert row("g", "uniformity", -3.0, -3.5, None, "lower")["significant"] is None
    nan_ci = row("g", "auc", 0.5, 0.6, (float("nan"), float("nan")), "higher")
    assert nan_ci["ci95"] is None and nan_ci["significant"] is None and nan_ci["winner"] is None
    neither = row("g", "p50", 1.0, 2.0, (0.5, 1.5), "neither")
    assert neither["significant"] and neither["winner"] is None

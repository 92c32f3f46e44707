"""Metric functions on hand-computed cases, ties and edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from behavior_stream.evaluation import metrics as M


def test_rank_metrics_on_hand_computed_ranks() -> None:
    ranks = np.array([1, 3, 25])
    assert M.recall_at_k(ranks, 20) == pytest.approx(2 / 3)
    assert M.mrr_at_k(ranks, 20) == pytest.approx((1 + 1 / 3) / 3)
    assert M.ndcg_at_k(ranks, 20) == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert M.recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranks, 25) == pytest.approx(1.0)


def test_rank_metrics_reject_bad_input_and_empty_is_nan() -> None:
    with pytest.raises(ValueError, match="1-based"):
        M.recall_at_k(np.array([0, 2]), 5)
    with pytest.raises(ValueError, match="K must be"):
        M.mrr_at_k(np.array([1]), 0)
    assert math.isnan(M.recall_at_k(np.array([], dtype=np.int64), 5))


def test_conservative_rank_counts_ties_against_the_target() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1]] * 4, dtype=np.float32)
    ranks = M.conservative_ranks(scores, np.array([0, 1, 2, 3]))
    # Items 0 and 2 tie: each is beaten-or-tied by the other and by item 1.
    assert ranks.tolist() == [3, 1, 3, 4]


def test_conservative_rank_all_tied_is_last_and_nan_target_is_last() -> None:
    flat = np.zeros((1, 5), dtype=np.float32)
    assert M.conservative_ranks(flat, np.array([2])).tolist() == [5]
    nan_target = np.array([[0.1, np.nan, 0.3]], dtype=np.float32)
    assert M.conservative_ranks(nan_target, np.array([1])).tolist() == [3]
    nan_other = np.array([[0.1, np.nan, 0.3]], dtype=np.float32)
    assert M.conservative_ranks(nan_other, np.array([2])).tolist() == [1]


def test_conservative_rank_shape_errors() -> None:
    with pytest.raises(ValueError, match="targets"):
        M.conservative_ranks(np.zeros((2, 3)), np.array([0]))


def test_auc_with_ties_hand_computed_and_matches_sklearn() -> None:
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.8, 0.8, 0.3, 0.1])
    # Pairs (pos, neg): (0.8, 0.8) tie = 1/2, (0.8, 0.1) = 1, (0.3, 0.8) = 0, (0.3, 0.1) = 1.
    assert M.roc_auc(labels, probs) == pytest.approx(2.5 / 4)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = rng.integers(0, 10, 500) / 10  # many ties
    assert M.roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))


def test_auc_undefined_with_one_class() -> None:
    assert math.isnan(M.roc_auc(np.array([0, 0]), np.array([0.2, 0.4])))


def test_classification_metrics_hand_computed() -> None:
    labels = np.array([1, 1, 0, 0, 1])
    probs = np.array([0.9, 0.4, 0.6, 0.1, 0.5])  # 0.5 is predicted positive (>= threshold)
    m = M.classification_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01 + 0.25) / 5)
    assert m["positive_rate"] == pytest.approx(3 / 5)


def test_classification_edge_cases_are_zero_not_errors() -> None:
    nothing_predicted = M.classification_metrics(np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3]))
    assert nothing_predicted["precision"] == 0.0
    assert nothing_predicted["f1"] == 0.0
    assert nothing_predicted["recall"] == 0.0
    no_positives = M.classification_metrics(np.array([0, 0]), np.array([0.7, 0.2]))
    assert no_positives["recall"] == 0.0
    assert no_positives["precision"] == 0.0
    assert math.isnan(no_positives["roc_auc"])


def test_coverage_and_popularity() -> None:
    top = np.array([[0, 1], [1, 2]])
    assert M.coverage_at_k(top, 10) == pytest.approx(0.3)
    counts = np.array([10, 5, 0, 1])
    assert M.popularity_at_k(np.array([[0, 1]]), counts) == pytest.approx((1.0 + 0.5) / 2)
    assert M.coverage_at_k(np.zeros((0, 2), np.int64), 10) == 0.0


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 8, 200)
    sums = np.stack([rng.binomial(counts, 0.3), rng.binomial(counts, 0.6)], axis=1).astype(float)
    point = sums.sum(0) / counts.sum()
    low, high = M.cluster_bootstrap_ci(sums, counts, n_resamples=500, seed=7)
    assert np.all(low <= point) and np.all(point <= high)
    again = M.cluster_bootstrap_ci(sums, counts, n_resamples=500, seed=7)
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])
    other = M.cluster_bootstrap_ci(sums, counts, n_resamples=500, seed=8)
    assert not np.array_equal(low, other[0])


def test_cluster_bootstrap_is_wider_for_correlated_clusters() -> None:
    # 50 sequences of 10 identical outcomes vs the same 500 outcomes as independent clusters.
    outcome = np.repeat(np.arange(50) % 2, 10).astype(float)
    clustered = M.cluster_bootstrap_ci(outcome.reshape(50, 10).sum(1, keepdims=True), np.full(50, 10), 500, 1)
    independent = M.cluster_bootstrap_ci(outcome[:, None], np.ones(500), 500, 1)
    assert clustered[1][0] - clustered[0][0] > 2 * (independent[1][0] - independent[0][0])


def test_bootstrap_degenerate_inputs() -> None:
    low, high = M.cluster_bootstrap_ci(np.full((5, 1), 2.0), np.full(5, 4), 100, 0)
    assert low[0] == pytest.approx(0.5) and high[0] == pytest.approx(0.5)
    empty = M.cluster_bootstrap_ci(np.zeros((0, 2)), np.zeros(0), 100, 0)
    assert np.isnan(empty[0]).all()


def test_sliding_rank_metrics_window() -> None:
    acc = M.SlidingRankMetrics(window=3, ks=[5, 1])
    assert math.isnan(acc.recall(5))
    for rank in (1, None, 4, 2):
        acc.add(rank)
    # The window now holds [None, 4, 2]: the rank-1 hit was evicted.
    assert len(acc) == 3 and acc.total == 4
    assert acc.recall(5) == pytest.approx(2 / 3)
    assert acc.recall(1) == 0.0
    assert acc.mrr(5) == pytest.approx((1 / 4 + 1 / 2) / 3)
    with pytest.raises(KeyError):
        acc.recall(20)
    with pytest.raises(ValueError):
        acc.add(0)


def test_sliding_rank_metrics_match_batch_metrics() -> None:
    rng = np.random.default_rng(5)
    ranks = rng.integers(1, 60, 3000)
    acc = M.SlidingRankMetrics(window=1000, ks=(10, 20))
    for r in ranks:
        acc.add(int(r))
    for k in (10, 20):
        assert acc.recall(k) == pytest.approx(M.recall_at_k(ranks[-1000:], k))
        assert acc.mrr(k) == pytest.approx(M.mrr_at_k(ranks[-1000:], k))

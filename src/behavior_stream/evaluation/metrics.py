"""Pure evaluation metrics (NumPy in, floats out), shared by offline evaluation and online stream metrics.

Conventions, stated once: a rank is 1-based and conservative (ties count against the scorer);
`None`/absent predictions are the caller's business; a mean over zero predictions is NaN
(undefined), never a silent 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


def conservative_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target: 1 + number of OTHER items scoring >= the target's score.

    `scores` is (n, n_items), `targets` (n,) catalog indices. A NaN target score ranks last
    (n_items); NaN scores of other items never beat the target.
    """
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (n, n_items), targets (n,); got {scores.shape}, {targets.shape}")
    target_scores = scores[np.arange(len(targets)), targets]  # (n,)
    # The target itself satisfies >=, so the count already includes the leading "1 +".
    ranks = (scores >= target_scores[:, None]).sum(axis=1)  # (n,)
    ranks[np.isnan(target_scores)] = scores.shape[1]
    return ranks.astype(np.int64)


def _check_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and r.min() < 1:
        raise ValueError(f"ranks are 1-based, got a rank of {r.min()}")
    return r


def hits_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-prediction hit indicator (rank <= K) as float64."""
    return (_check_ranks(ranks, k) <= k).astype(np.float64)


def reciprocal_ranks_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-prediction 1/rank when rank <= K, else 0."""
    r = _check_ranks(ranks, k)
    return np.where(r <= k, 1.0 / r, 0.0)


def ndcg_gains_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-prediction NDCG with one relevant item: 1/log2(rank + 1) when rank <= K, else 0."""
    r = _check_ranks(ranks, k)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Recall@K (= HR@K with one target per prediction): fraction of ranks <= K."""
    return _mean(hits_at_k(ranks, k))


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """MRR@K: mean reciprocal rank, with ranks beyond K contributing 0."""
    return _mean(reciprocal_ranks_at_k(ranks, k))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@K with a single relevant item (the ideal DCG is 1)."""
    return _mean(ndcg_gains_at_k(ranks, k))


def coverage_at_k(top_k: np.ndarray, n_items: int) -> float:
    """Catalog coverage: fraction of the n_items catalog appearing in any top-K list (rows of `top_k`)."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return float(np.unique(top_k).size / n_items) if top_k.size else 0.0


def popularity_at_k(top_k: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean normalized training popularity (count / max count, in [0, 1]) of recommended items.

    The normalization follows Ludewig & Jannach's "popularity" measure; 1 means every
    recommended item is the most popular one.
    """
    top = int(item_counts.max()) if item_counts.size else 0
    if top_k.size == 0 or top == 0:
        return float("nan")
    return float(item_counts[top_k].mean() / top)


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC-AUC via the Mann-Whitney statistic with average ranks, so each tied (pos, neg) pair counts 1/2.

    NaN when only one class is present (AUC is undefined).
    """
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(probs, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    # Average 1-based rank of each run of equal scores.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    ends = np.r_[starts[1:], sorted_p.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(p.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error between the probability and the 0/1 label."""
    y = np.asarray(labels, dtype=np.float64)
    return _mean((np.asarray(probs, dtype=np.float64) - y) ** 2)


def classification_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (predicted positive iff prob >= threshold), ROC-AUC and Brier.

    Edge cases: precision is 0 when nothing is predicted positive, recall is 0 when there
    are no positive labels, F1 is 0 when precision + recall is 0 (the sklearn `zero_division=0` rule).
    """
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(probs, dtype=np.float64) >= threshold
    tp = int((pred & y).sum())
    n_pred, n_pos = int(pred.sum()), int(y.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_pos if n_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": _mean((pred == y).astype(np.float64)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(y, probs),
        "brier": brier_score(y, probs),
        "positive_rate": _mean(y.astype(np.float64)),
    }


def cluster_bootstrap_ci(
    sums: np.ndarray, counts: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of ratio-of-sums means, resampling whole clusters (test sequences).

    `sums` is (n_clusters, n_metrics): per-cluster sums of a per-prediction value; `counts`
    (n_clusters,) the predictions per cluster. Each resample draws n_clusters clusters with
    replacement and recomputes sum(sums)/sum(counts), so correlated predictions of one sequence
    move together. Returns (low, high), each (n_metrics,). Deterministic for a seed.
    """
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if sums.ndim != 2 or counts.shape != (sums.shape[0],):
        raise ValueError(f"need sums (clusters, m), counts (clusters,), got {sums.shape} {counts.shape}")
    n = sums.shape[0]
    if n == 0 or counts.sum() == 0:
        nan = np.full(sums.shape[1], np.nan)
        return nan, nan.copy()
    rng = np.random.default_rng(seed)
    stats = np.empty((n_resamples, sums.shape[1]))
    chunk = 100  # bounds the (chunk, n_clusters) weight matrix for large test sets
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)  # (size, n_clusters)
        denom = weights @ counts  # (size,)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start : start + size] = (weights @ sums) / denom[:, None]
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(stats, [alpha, 1.0 - alpha], axis=0)
    return low, high


class SlidingRankMetrics:
    """Recall@K and MRR@K over the last `window` predictions, for the stream's test-then-train evaluation.

    `add(rank)` takes the conservative 1-based rank of the true next item, or None when it was
    not ranked (outside the served list), which counts as a miss. Targets the offline protocol
    skips (items not in the catalog) should not be added at all. O(len(ks)) per call.
    """

    def __init__(self, window: int, ks: Iterable[int]) -> None:
        self.ks = tuple(sorted(set(ks)))
        if window < 1 or not self.ks or self.ks[0] < 1:
            raise ValueError(f"window and every K must be >= 1, got window={window}, ks={self.ks}")
        self.window = window
        self._ranks: deque[int | None] = deque()
        self._hits = [0] * len(self.ks)
        self._rr = [0.0] * len(self.ks)
        self.total = 0

    def add(self, rank: int | None) -> None:
        """Record one prediction; evicts the oldest once the window is full."""
        if rank is not None and rank < 1:
            raise ValueError(f"ranks are 1-based, got {rank}")
        self._ranks.append(rank)
        self._update(rank, +1)
        if len(self._ranks) > self.window:
            self._update(self._ranks.popleft(), -1)
        self.total += 1

    def _update(self, rank: int | None, sign: int) -> None:
        if rank is None:
            return
        for i, k in enumerate(self.ks):
            if rank <= k:
                self._hits[i] += sign
                self._rr[i] += sign / rank

    def __len__(self) -> int:
        return len(self._ranks)

    def _slot(self, k: int) -> int:
        try:
            return self.ks.index(k)
        except ValueError:
            raise KeyError(f"K={k} is not tracked; tracked: {self.ks}") from None

    def recall(self, k: int) -> float:
        """Recall@K over the window (NaN when empty)."""
        i = self._slot(k)
        return self._hits[i] / len(self._ranks) if self._ranks else float("nan")

    def mrr(self, k: int) -> float:
        """MRR@K over the window (NaN when empty)."""
        i = self._slot(k)
        # Running float sums drift by ~1e-16 per update; clamp so a window of misses reads 0, not -1e-17.
        return max(self._rr[i], 0.0) / len(self._ranks) if self._ranks else float("nan")

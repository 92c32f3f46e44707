"""Online A/B between two checkpoints: stable user assignment, per-variant counts, significance.

Users are assigned by a stable hash of `user_id` (CRC32 into 10,000 buckets), so a user keeps
their variant across restarts and workers. Variant "A" is the control (the `checkpoint`
setting), "B" the treatment (`ab_checkpoint`), served to a `ab_split` share of users.

Each worker counts its own users; `VariantStats` are what it publishes to the stats topic and
`merge_stats` adds them up, so `/experiments` answers for the whole group. The test on
Recall@k clusters by user: one user's events are not independent draws.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, astuple, dataclass, field
from typing import Any, Literal

Variant = Literal["A", "B"]
VARIANTS: tuple[Variant, ...] = ("A", "B")
BUCKETS = 10_000
CLUSTER_K = 20  # the k of the per-user tallies behind the significance test


def bucket_of(user_id: str) -> int:
    """The user's stable bucket in [0, BUCKETS)."""
    return zlib.crc32(user_id.encode("utf-8")) % BUCKETS


def variant_of(user_id: str, split: float) -> Variant:
    """'B' for the first `split` share of buckets, else 'A'."""
    return "B" if bucket_of(user_id) < round(split * BUCKETS) else "A"


def two_proportion_test(hits_a: int, n_a: int, hits_b: int, n_b: int) -> dict[str, float]:
    """Difference of rates B - A with a 95% Wald interval and the two-sided pooled z-test p-value."""
    if n_a == 0 or n_b == 0:
        return {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "z": math.nan, "p_value": math.nan}
    pa, pb = hits_a / n_a, hits_b / n_b
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = diff / se0 if se0 > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))
    return {"diff": diff, "ci_low": diff - 1.96 * se, "ci_high": diff + 1.96 * se, "z": z, "p_value": p}


@dataclass(frozen=True)
class ClusterSums:
    """Mergeable sums of one variant's per-user tallies (n_i predictions, h_i hits of user i).

    Sums over workers are sums of these fields, so each worker publishes its own and any worker
    adds them up; a user counted by two workers (after a rebalance) is two clusters.
    """

    users: int = 0  # G
    n: int = 0  # sum n_i
    h: int = 0  # sum h_i
    h2: int = 0  # sum h_i^2
    n2: int = 0  # sum n_i^2
    hn: int = 0  # sum h_i n_i

    def __add__(self, other: ClusterSums) -> ClusterSums:
        return ClusterSums(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def of(cls, tallies: Iterable[tuple[int, int]]) -> ClusterSums:
        """Sums of (n_i, h_i) pairs; users without predictions are not clusters."""
        g = n = h = h2 = n2 = hn = 0
        for ni, hi in tallies:
            if ni == 0:
                continue
            g, n, h = g + 1, n + ni, h + hi
            h2, n2, hn = h2 + hi * hi, n2 + ni * ni, hn + hi * ni
        return cls(g, n, h, h2, n2, hn)


def clustered_rate(s: ClusterSums) -> tuple[float, float]:
    """Rate p = sum h / sum n and its cluster-robust (by user) variance; NaN below two users.

    Var(p) ~ (sum h^2 - 2 p sum hn + p^2 sum n^2) / (sum n)^2 * G / (G - 1): the ratio estimator's
    sandwich variance, so a user whose events all hit (or all miss) weighs as one draw, not many.
    """
    if s.users < 2 or s.n == 0:
        return math.nan, math.nan
    p = s.h / s.n
    var = (s.h2 - 2 * p * s.hn + p * p * s.n2) / (s.n * s.n) * s.users / (s.users - 1)
    return p, max(0.0, var)  # rounding can leave a tiny negative for all-equal users


def clustered_difference(a: ClusterSums, b: ClusterSums) -> dict[str, float]:
    """Difference of rates B - A with a 95% interval and a two-sided p-value, clustered by user
    (the arms hold disjoint users, so their variances add)."""
    pa, va = clustered_rate(a)
    pb, vb = clustered_rate(b)
    if math.isnan(pa) or math.isnan(pb):
        return {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "z": math.nan, "p_value": math.nan}
    diff, se = pb - pa, math.sqrt(va + vb)
    z = diff / se if se > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return {"diff": diff, "ci_low": diff - 1.96 * se, "ci_high": diff + 1.96 * se, "z": z, "p_value": p}


@dataclass(frozen=True)
class VariantStats:
    """One variant's figures as one worker publishes them (and as they are summed)."""

    predictions: int = 0
    hits: int = 0  # at CLUSTER_K
    reciprocal: float = 0.0  # at CLUSTER_K
    recommendations: int = 0
    purchases: int = 0
    purchases_recommended: int = 0
    clusters: ClusterSums = field(default_factory=ClusterSums)

    def __add__(self, other: VariantStats) -> VariantStats:
        return VariantStats(
            self.predictions + other.predictions,
            self.hits + other.hits,
            self.reciprocal + other.reciprocal,
            self.recommendations + other.recommendations,
            self.purchases + other.purchases,
            self.purchases_recommended + other.purchases_recommended,
            self.clusters + other.clusters,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stats topic's per-variant value)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VariantStats:
        """The inverse of `to_dict`; raises on a malformed record."""
        return cls(**{**d, "clusters": ClusterSums(**d["clusters"])})


@dataclass
class VariantCounts:
    """Cumulative online counts of one variant (since the worker started)."""

    predictions: int = 0
    hits: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # k -> ranks <= k
    reciprocal: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    recommendations: int = 0
    purchases: int = 0
    purchases_recommended: int = 0  # purchases of an item that was in the user's previous feed
    # user -> [predictions, hits at CLUSTER_K]: the clusters of the significance test.
    per_user: dict[str, list[int]] = field(default_factory=dict)

    def add_rank(self, rank: int | None, ks: tuple[int, ...]) -> None:
        """One test-then-train prediction (None = the item was not in the feed)."""
        self.predictions += 1
        for k in ks:
            if rank is not None and rank <= k:
                self.hits[k] += 1
                self.reciprocal[k] += 1.0 / rank

    def add_user_rank(self, user_id: str, rank: int | None) -> None:
        """The same prediction, tallied for its user (at CLUSTER_K)."""
        tally = self.per_user.setdefault(user_id, [0, 0])
        tally[0] += 1
        tally[1] += int(rank is not None and rank <= CLUSTER_K)

    def stats(self) -> VariantStats:
        """This worker's publishable figures at CLUSTER_K."""
        return VariantStats(
            self.predictions,
            self.hits[CLUSTER_K],
            self.reciprocal[CLUSTER_K],
            self.recommendations,
            self.purchases,
            self.purchases_recommended,
            ClusterSums.of((n, h) for n, h in self.per_user.values()),
        )


def merge_stats(per_worker: Iterable[dict[str, VariantStats]]) -> dict[str, VariantStats]:
    """Per-variant sums over workers."""
    total: dict[str, VariantStats] = {}
    for stats in per_worker:
        for variant, s in stats.items():
            total[variant] = total.get(variant, VariantStats()) + s
    return total


def summary(
    per_worker: dict[str, dict[str, VariantStats]], versions: dict[str, str], split: float
) -> dict[str, Any]:
    """The /experiments document: per-variant figures summed over every worker's latest
    `VariantStats` and the B - A test on Recall@CLUSTER_K, clustered by user."""
    k = CLUSTER_K
    stats = merge_stats(per_worker.values())
    workers = {
        w: {
            "users": sum(s.clusters.users for s in vs.values()),
            "predictions": sum(s.predictions for s in vs.values()),
        }
        for w, vs in sorted(per_worker.items())
    }
    out: dict[str, Any] = {"split_b": split, "k": k, "workers": workers, "variants": {}}
    for name, s in sorted(stats.items()):
        n = s.predictions
        out["variants"][name] = {
            "model_version": versions.get(name),
            "users": s.clusters.users,
            "predictions": n,
            f"recall@{k}": s.hits / n if n else None,
            f"mrr@{k}": s.reciprocal / n if n else None,
            "recommendations": s.recommendations,
            "purchases": s.purchases,
            "purchase_after_recommendation_rate": s.purchases_recommended / s.purchases
            if s.purchases
            else None,
        }
    a, b = stats.get("A"), stats.get("B")
    if a is not None and b is not None:
        test = clustered_difference(a.clusters, b.clusters)
        test["significant"] = bool(test["p_value"] < 0.05) if not math.isnan(test["p_value"]) else False
        out[f"recall@{k}_b_minus_a"] = test
    return out

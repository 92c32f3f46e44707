"""Online A/B between two checkpoints: stable user assignment, per-variant counts, significance.

Users are assigned by a stable hash of `user_id` (CRC32 into 10,000 buckets), so a user keeps
their variant across restarts and workers. Variant "A" is the control (the `checkpoint`
setting), "B" the treatment (`ab_checkpoint`), served to a `ab_split` share of users.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

Variant = Literal["A", "B"]
VARIANTS: tuple[Variant, ...] = ("A", "B")
BUCKETS = 10_000


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


@dataclass
class VariantCounts:
    """Cumulative online counts of one variant (since the worker started)."""

    predictions: int = 0
    hits: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # k -> ranks <= k
    reciprocal: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    recommendations: int = 0
    purchases: int = 0
    purchases_recommended: int = 0  # purchases of an item that was in the user's previous feed

    def add_rank(self, rank: int | None, ks: tuple[int, ...]) -> None:
        """One test-then-train prediction (None = the item was not in the feed)."""
        self.predictions += 1
        for k in ks:
            if rank is not None and rank <= k:
                self.hits[k] += 1
                self.reciprocal[k] += 1.0 / rank


def summary(
    counts: dict[str, VariantCounts], versions: dict[str, str], split: float, k: int
) -> dict[str, Any]:
    """The /experiments document: per-variant figures and the B - A test on Recall@k."""
    out: dict[str, Any] = {"split_b": split, "k": k, "variants": {}}
    for name, c in counts.items():
        n = c.predictions
        out["variants"][name] = {
            "model_version": versions.get(name),
            "predictions": n,
            f"recall@{k}": c.hits[k] / n if n else None,
            f"mrr@{k}": c.reciprocal[k] / n if n else None,
            "recommendations": c.recommendations,
            "purchases": c.purchases,
            "purchase_after_recommendation_rate": c.purchases_recommended / c.purchases
            if c.purchases
            else None,
        }
    a, b = counts.get("A"), counts.get("B")
    if a is not None and b is not None:
        test = two_proportion_test(a.hits[k], a.predictions, b.hits[k], b.predictions)
        test["significant"] = bool(test["p_value"] < 0.05) if not math.isnan(test["p_value"]) else False
        out[f"recall@{k}_b_minus_a"] = test
    return out

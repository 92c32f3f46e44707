"""The metrics.json document of `evaluate`: its typed schema, checked before the file is written.

The models validate the dict `protocol.evaluate` returns (NaN for undefined figures) and the
parsed file (where orjson has written NaN as null), so undefined figures are `float | None`.
Metric names carry their cut-off (`recall@20`); the cut-offs are `protocol.ks`, and every row
must carry each metric at each of them. The dict, not a dump of the model, is what gets written,
so validating never changes the file's content.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Figure = float | None  # NaN in memory, null in the file: undefined (e.g. an empty bucket)
Interval = Annotated[list[Figure], Field(min_length=2, max_length=2)]  # [low, high]

# Per prediction, with a 95% CI; then set-level figures of the top-K lists.
CI_METRICS = ("recall", "mrr", "ndcg")
NEXT_ITEM_METRICS = (*CI_METRICS, "coverage", "popularity")
BREAKDOWN_METRICS = ("recall", "mrr")
_METRIC_AT_K = re.compile(r"^([a-z]+)@([1-9][0-9]*)$")


class _Strict(BaseModel):
    """Known keys only, no coercion (a string is not a number), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _AtK(BaseModel):
    """A row whose extra keys are `<metric>@<K>` figures, checked against the document's ks."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    __pydantic_extra__: dict[str, Figure] = Field(init=False)

    def at_k(self) -> dict[str, Figure]:
        """The row's `<metric>@<K>` figures."""
        return dict(self.__pydantic_extra__ or {})

    def check_names(self, metrics: tuple[str, ...], ks: list[int], where: str) -> None:
        """Raise unless the figures are exactly each of `metrics` at each of `ks`."""
        got = set(self.at_k())
        expected = {f"{m}@{k}" for m in metrics for k in ks}
        if got != expected:
            bad = sorted(n for n in got - expected if not _METRIC_AT_K.match(n)) or sorted(got ^ expected)
            raise ValueError(f"{where}: metric keys differ from {sorted(expected)}: {bad}")


class Protocol(_Strict):
    """How the figures were made: the protocol text and its parameters."""

    task: str
    ranking: str
    ties: str
    metrics: str
    bootstrap: str
    breakdown: str
    baselines: str
    purchase: str
    unseen_items: str  # whether unseen targets were skipped or their events dropped (GRU4Rec)
    ks: list[int] = Field(min_length=1)  # cut-offs, ascending
    threshold: float  # purchase predicted iff probability >= threshold
    n_bootstrap: int
    seed: int
    catalog_items: int  # items ranked for every prediction
    session_gap_ms: int  # gap that starts a session in the breakdown (the evaluated model's)


class Counts(_Strict):
    """What was evaluated."""

    sequences: int
    sequences_with_predictions: int
    predictions: int  # next-item targets ranked
    skipped_unseen_targets: int
    dropped_unseen_events: int
    purchase_predictions: int
    purchase_positives: int


class NextItemMetrics(_AtK):
    """One scorer: recall/mrr/ndcg/coverage/popularity@K, CIs of the first three, and timing."""

    ci95: dict[str, Interval]  # metric@K -> [low, high], cluster bootstrap
    seconds: float  # scoring and ranking
    seconds_per_10k_predictions: Figure


class PurchaseMetrics(_Strict):
    """One purchase predictor's classification metrics."""

    accuracy: Figure
    precision: Figure
    recall: Figure
    f1: Figure
    roc_auc: Figure  # undefined when the labels are all one class
    brier: Figure
    positive_rate: Figure
    seconds: float


class Bucket(_AtK):
    """Recall@K and MRR@K of one scorer on the targets of one session-prefix-length bucket."""

    bucket: str  # '0', '2-4', '20+': events of the session before the target
    n: int  # targets in the bucket


class VersusBaseline(_Strict):
    """A probe's headline score beside its constant/majority baseline, with 95% bootstrap intervals."""

    metric: str  # roc_auc (purchase), accuracy (category), mae (length)
    value: Figure
    ci95: Interval
    baseline: str  # what the baseline predicts: constant score, majority class, mean length
    baseline_value: Figure
    baseline_ci95: Interval
    at_chance: bool | None  # the two intervals overlap; None when a figure is undefined (no users)
    verdict: Literal["better", "worse", "at chance"] | None
    n: int  # users the score is over


class ProbeScores(BaseModel):
    """One probe: its metrics (free-form figures, per probe) and the comparison with its baseline."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    n: int
    versus_baseline: VersusBaseline


class ProbesSection(_Strict):
    """`probes` (`evaluate --probes`): `skipped` alone with the protocol when there were too few users,
    else the three probes, geometry and stability (see `evaluation.representations`)."""

    protocol: dict[str, Any]
    skipped: str | None = None
    purchase: ProbeScores | None = None
    category: ProbeScores | None = None
    length: ProbeScores | None = None
    geometry: dict[str, Any] | None = None
    stability: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _skipped_or_complete(self) -> ProbesSection:
        parts = (self.purchase, self.category, self.length, self.geometry, self.stability)
        if self.skipped is None and any(p is None for p in parts):
            raise ValueError("probes: purchase, category, length, geometry and stability are all required")
        if self.skipped is not None and any(p is not None for p in parts):
            raise ValueError("probes: a skipped section has no scores")
        return self


class PairedDifference(_Strict):
    """One metric of the model beside one baseline: the 95% paired cluster-bootstrap interval of
    model - baseline; `significant` = the interval lies above zero (in the model's favour)."""

    model: Figure
    baseline: Figure
    difference: Figure  # model - baseline
    ci95: Interval
    significant: bool

    @model_validator(mode="after")
    def _significant_iff_above_zero(self) -> PairedDifference:
        low = self.ci95[0]
        # NaN is not > 0: an undefined interval (no predictions) is never significant.
        if self.significant != (low is not None and low > 0):
            raise ValueError(f"significant is {self.significant} for the interval {self.ci95}")
        return self


class Versus(_Strict):
    """`versus`: the evaluated model (`reference`, a next_item scorer) against every other scorer."""

    reference: str
    baselines: dict[str, dict[str, PairedDifference]] = Field(min_length=1)  # baseline -> metric@K -> figures


class MetricsDocument(_Strict):
    """metrics.json: the top-level sections."""

    dataset: dict[str, Any]  # what was evaluated on (paths, format, split, checkpoint); free-form
    protocol: Protocol
    counts: Counts
    next_item: dict[str, NextItemMetrics]  # by scorer name
    purchase: dict[str, PurchaseMetrics]  # by predictor name
    breakdown: dict[str, list[Bucket]]  # by scorer name, buckets in ascending length
    probes: ProbesSection | None = None  # `evaluate --probes` only
    # `evaluate --scenarios` only: per scenario (search, cart, related, purchase_intent) its
    # figures beside its baseline, null where the data has no prediction (evaluation/scenario_eval.py)
    scenarios: dict[str, dict[str, Any] | None] | None = None
    # Null (or absent, in files written before it) without a model or without baselines.
    versus: Versus | None = None

    @model_validator(mode="after")
    def _metrics_at_every_k(self) -> MetricsDocument:
        ks = self.protocol.ks
        for name, row in self.next_item.items():
            row.check_names(NEXT_ITEM_METRICS, ks, f"next_item.{name}")
            expected = {f"{m}@{k}" for m in CI_METRICS for k in ks}
            if set(row.ci95) != expected:
                raise ValueError(f"next_item.{name}.ci95: keys differ from {sorted(expected)}")
        for name, rows in self.breakdown.items():
            for i, bucket in enumerate(rows):
                bucket.check_names(BREAKDOWN_METRICS, ks, f"breakdown.{name}[{i}]")
        if set(self.breakdown) != set(self.next_item):
            raise ValueError("breakdown and next_item name different scorers")
        if self.versus is not None:
            self._check_versus(self.versus, ks)
        return self

    def _check_versus(self, versus: Versus, ks: list[int]) -> None:
        expected_names = set(self.next_item) - {versus.reference}
        if versus.reference not in self.next_item or set(versus.baselines) != expected_names:
            raise ValueError(
                f"versus: reference {versus.reference!r} and baselines {sorted(versus.baselines)} must be "
                f"the next_item scorers {sorted(self.next_item)}"
            )
        expected = {f"{m}@{k}" for m in CI_METRICS for k in ks}
        for name, figures in versus.baselines.items():
            if set(figures) != expected:
                raise ValueError(f"versus.baselines.{name}: metric keys differ from {sorted(expected)}")


def validate_metrics(metrics: dict[str, Any]) -> MetricsDocument:
    """The typed document of a metrics dict (as `evaluate` returns it, or as read back from JSON).

    Raises `pydantic.ValidationError` when a section, key or type departs from the schema.
    """
    return MetricsDocument.model_validate(metrics)

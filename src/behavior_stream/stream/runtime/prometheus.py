"""Prometheus metrics of a worker, fed from each batch's `BatchStats`.

Names follow Prometheus conventions: counters end in `_total`, durations are `_seconds`.
Each worker owns its registry, so several apps can live in one process (tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from behavior_stream.evaluation.metrics import SlidingRankMetrics
from behavior_stream.schema.events import EVENT_TYPES, Reason
from behavior_stream.stream.core.experiment import VariantCounts
from behavior_stream.stream.core.records import BatchStats

ONLINE_KS = (5, 10, 20)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_PHASES = ("compute", "wait_input", "wait_flush", "submit")
PROBABILITY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class RecoveryCollector(Collector):
    """`behavior_stream_changelog_recovery_records_total{outcome}`: changelog records the state
    store was handed by recovery since the worker started, applied or skipped (at or below what
    the store already reflects); read from the store at scrape time."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One sample per outcome."""
        applied, skipped = self.counts()
        family = CounterMetricFamily(
            "behavior_stream_changelog_recovery_records",
            "Changelog records handed to the state store by recovery",
            labels=["outcome"],
        )
        family.add_metric(["applied"], applied)
        family.add_metric(["skipped"], skipped)
        yield family


class StreamMetrics:
    """The worker's metrics and the sliding online (test-then-train) evaluation."""

    def __init__(self, online_window: int = 10_000) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("behavior_stream_events", "Valid events applied, by type", ["type"], registry=r)
        self.invalid = Counter(
            "behavior_stream_invalid_events", "Invalid records sent to the DLQ", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "behavior_stream_duplicate_events", "Redelivered or re-sent events not applied", registry=r
        )
        self.late = Counter("behavior_stream_late_events", "Events dropped as late", registry=r)
        self.rerouted = Counter(
            "behavior_stream_rerouted_events", "Records not keyed by user, re-partitioned", registry=r
        )
        self.purchase_probability = Histogram(
            "behavior_stream_purchase_probability",
            "Purchase probabilities served (stream records and API lookups)",
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "behavior_stream_batch_size", "Records per micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.step_seconds = Histogram(
            "behavior_stream_step_seconds",
            "Batched model step time per batch",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.score_seconds = Histogram(
            "behavior_stream_score_seconds",
            "Top-K scoring time per batch",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "behavior_stream_processing_latency_seconds",
            "Fetch-to-emit latency per output: from the fetch to the outputs' acknowledgement, "
            "the wait before processing included",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "behavior_stream_recommendations", "Recommendation messages emitted", registry=r
        )
        # Where the batch loop's wall time goes: the core (gap repair included) and the waits; the
        # rest of the worker's CPU is the runtime (Kafka clients, Faust, web). See issue 14.
        self.loop_seconds = Counter(
            "behavior_stream_batch_loop_seconds",
            "Batch loop time: computing (gap repair and the core), waiting for input, waiting for "
            "flushes in flight (the flush_depth limit), submitting the outputs",
            ["phase"],
            registry=r,
        )
        self.users = Gauge("behavior_stream_users", "Users in this worker's state", registry=r)
        v = ["variant"]
        self.model_recall = Gauge(
            "behavior_stream_online_model_recall",
            "Sliding Recall@k of each event's item ranked from the state just before it",
            ["k", *v],
            registry=r,
        )
        self.model_mrr = Gauge(
            "behavior_stream_online_model_mrr",
            "Sliding MRR@k of each event's item ranked from the state just before it",
            ["k", *v],
            registry=r,
        )
        self.online_recall = Gauge(
            "behavior_stream_online_recall", "Sliding test-then-train Recall@k", ["k", *v], registry=r
        )
        self.online_mrr = Gauge(
            "behavior_stream_online_mrr", "Sliding test-then-train MRR@k", ["k", *v], registry=r
        )
        self.online_predictions = Counter(
            "behavior_stream_online_predictions", "Events evaluated against the previous feed", v, registry=r
        )
        self.online_hits = Counter(
            "behavior_stream_online_hits",
            "Evaluated events whose item was in the feed's top k",
            ["k", *v],
            registry=r,
        )
        self.purchases = Counter(
            "behavior_stream_purchases",
            "Evaluated purchases, by whether the feed had the item",
            ["recommended", *v],
            registry=r,
        )
        self.feed_age = Histogram(
            "behavior_stream_feed_age_seconds",
            "Event-time age of a user's feed when the user acts again",
            v,
            buckets=(1, 10, 30, 60, 300, 900, 1800, 3600, 21600, 86400, 604800),
            registry=r,
        )
        self.variant_recommendations = Counter(
            "behavior_stream_variant_recommendations", "Feeds emitted, by variant", v, registry=r
        )
        self.model_info = Gauge(
            "behavior_stream_model_info", "Model version being served", ["version", *v], registry=r
        )
        self.model_reloads = Counter("behavior_stream_model_reloads", "Hot model reloads", registry=r)
        self.lag = Gauge(
            "behavior_stream_consumer_lag",
            "Records behind the partition end (its end offset minus the next offset to process)",
            ["topic", "partition"],
            registry=r,
        )
        self.gap_records = Counter(
            "behavior_stream_input_gap_records",
            "Input records read back because the input resumed past the recovered state",
            registry=r,
        )
        self.evicted = Counter("behavior_stream_evicted_users", "Users evicted by TTL or DELETE", registry=r)
        self.online_window = online_window
        self.online: dict[str, SlidingRankMetrics] = {}
        self.model_online: dict[str, SlidingRankMetrics] = {}
        self.counts: dict[str, VariantCounts] = {}
        # Pre-create labelled series so dashboards see zeros instead of gaps.
        for t in EVENT_TYPES:
            self.events.labels(t.value)
        for reason in Reason:
            self.invalid.labels(reason.value)
        for phase in LOOP_PHASES:
            self.loop_seconds.labels(phase)

    def observe(self, stats: BatchStats, emitted_at: float | None = None) -> None:
        """Fold one batch into the metrics; `emitted_at` is when its outputs were acknowledged."""
        for t, n in stats.events_by_type.items():
            self.events.labels(t).inc(n)
        for reason, n in stats.invalid_by_reason.items():
            self.invalid.labels(reason).inc(n)
        self.duplicates.inc(stats.duplicates)
        self.late.inc(stats.late)
        self.rerouted.inc(stats.rerouted)
        self.recommendations.inc(stats.recommendations)
        self.batch_size.observe(stats.records)
        for p in stats.intents:
            self.purchase_probability.observe(p)
        if stats.steps:
            self.step_seconds.observe(stats.step_seconds)
            self.score_seconds.observe(stats.score_seconds)
        now = emitted_at if emitted_at is not None else time.time()
        for received in stats.received:
            self.latency.observe(max(0.0, now - received))
        self.add_ranks(stats.ranks)
        for (variant, rank), user in zip(stats.ranks, stats.rank_users, strict=True):
            self.variant(variant).add_user_rank(user, rank)
        self.add_model_ranks(stats.model_ranks)
        for variant, age in stats.feed_ages:
            self.feed_age.labels(variant).observe(age)
        for variant, recommended in stats.purchases:
            self.purchases.labels(str(recommended).lower(), variant).inc()
            counts = self.variant(variant)
            counts.purchases += 1
            counts.purchases_recommended += int(recommended)
        for variant, n in stats.recommendations_by_variant.items():
            self.variant_recommendations.labels(variant).inc(n)
            self.variant(variant).recommendations += n

    def variant(self, name: str) -> VariantCounts:
        """Cumulative counts of a variant (created on first use)."""
        if name not in self.counts:
            self.counts[name] = VariantCounts()
            self.online[name] = SlidingRankMetrics(self.online_window, ONLINE_KS)
        return self.counts[name]

    def add_ranks(self, ranks: Iterable[tuple[str, int | None]]) -> None:
        """Online evaluation: (variant, rank of the applied item in the previous feed or None)."""
        touched = set()
        for variant, rank in ranks:
            self.variant(variant).add_rank(rank, ONLINE_KS)
            self.online[variant].add(rank)
            self.online_predictions.labels(variant).inc()
            for k in ONLINE_KS:
                if rank is not None and rank <= k:
                    self.online_hits.labels(str(k), variant).inc()
            touched.add(variant)
        for variant in touched:
            window = self.online[variant]
            for k in ONLINE_KS:
                self.online_recall.labels(str(k), variant).set(window.recall(k))
                self.online_mrr.labels(str(k), variant).set(window.mrr(k))

    def add_model_ranks(self, ranks: Iterable[tuple[str, int]]) -> None:
        """Per-event ranks from the model state before each event (offline protocol)."""
        touched = set()
        for variant, rank in ranks:
            window = self.model_online.get(variant)
            if window is None:
                window = self.model_online[variant] = SlidingRankMetrics(self.online_window, ONLINE_KS)
            window.add(rank)
            touched.add(variant)
        for variant in touched:
            for k in ONLINE_KS:
                self.model_recall.labels(str(k), variant).set(self.model_online[variant].recall(k))
                self.model_mrr.labels(str(k), variant).set(self.model_online[variant].mrr(k))

    def set_models(self, versions: dict[str, str]) -> None:
        """Expose the served model version of each variant (older series removed)."""
        self.model_info.clear()
        for variant, version in versions.items():
            self.model_info.labels(version, variant).set(1)

    def track_recovery(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Expose the state store's recovery counts (applied, skipped) (see RecoveryCollector)."""
        self.registry.register(RecoveryCollector(counts))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

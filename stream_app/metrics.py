"""Prometheus metrics of a worker, fed from each batch's `BatchStats`.

Names follow Prometheus conventions: counters end in `_total`, durations are `_seconds`.
Each worker owns its registry, so several apps can live in one process (tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from model.events import EVENT_TYPES, Reason
from model.metrics import SlidingRankMetrics
from stream_app.records import BatchStats

ONLINE_KS = (5, 10, 20)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
            "Consume-to-emit latency per output",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "behavior_stream_recommendations", "Recommendation messages emitted", registry=r
        )
        self.users = Gauge("behavior_stream_users", "Users in this worker's state", registry=r)
        self.online_recall = Gauge(
            "behavior_stream_online_recall", "Sliding test-then-train Recall@k", ["k"], registry=r
        )
        self.online_mrr = Gauge(
            "behavior_stream_online_mrr", "Sliding test-then-train MRR@k", ["k"], registry=r
        )
        self.online_predictions = Counter(
            "behavior_stream_online_predictions", "Events evaluated against the previous feed", registry=r
        )
        self.model_info = Gauge(
            "behavior_stream_model_info", "Model version being served", ["version"], registry=r
        )
        self.model_reloads = Counter("behavior_stream_model_reloads", "Hot model reloads", registry=r)
        self.lag = Gauge(
            "behavior_stream_consumer_lag",
            "Records behind the partition end",
            ["topic", "partition"],
            registry=r,
        )
        self.evicted = Counter("behavior_stream_evicted_users", "Users evicted by TTL or DELETE", registry=r)
        self.online = SlidingRankMetrics(online_window, ONLINE_KS)
        # Pre-create labelled series so dashboards see zeros instead of gaps.
        for t in EVENT_TYPES:
            self.events.labels(t.value)
        for reason in Reason:
            self.invalid.labels(reason.value)

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
        if stats.steps:
            self.step_seconds.observe(stats.step_seconds)
            self.score_seconds.observe(stats.score_seconds)
        now = emitted_at if emitted_at is not None else time.time()
        for received in stats.received:
            self.latency.observe(max(0.0, now - received))
        self.add_ranks(stats.ranks)

    def add_ranks(self, ranks: Iterable[int | None]) -> None:
        """Online evaluation: ranks of applied items in the user's previous feed (None = miss)."""
        n = 0
        for rank in ranks:
            self.online.add(rank)
            n += 1
        if n:
            self.online_predictions.inc(n)
            for k in ONLINE_KS:
                self.online_recall.labels(str(k)).set(self.online.recall(k))
                self.online_mrr.labels(str(k)).set(self.online.mrr(k))

    def set_model(self, version: str) -> None:
        """Expose the served model version (one series at 1, older ones removed)."""
        self.model_info.clear()
        self.model_info.labels(version).set(1)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

"""Consume-to-emit latency of the worker at fractions of its measured throughput.

One fresh worker on a fresh topic; after a warm-up, each offered load is replayed with
`Pace(rate=...)` for a bounded time, and its p50/p95/p99 come from the difference of the
worker's `behavior_stream_processing_latency_seconds` histogram before and after that load.
Each load sends new users (relabelled events), so nothing is dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.promtext import histogram_quantile
from behavior_stream.testing.replay import Pace, replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from benchmarks.config import RunSpec
from benchmarks.worker_runs import wait_applied, warm_up
from benchmarks.workload import Workload, cycled, drop_topics

log = logging.getLogger(__name__)

LATENCY_METRIC = "behavior_stream_processing_latency_seconds"
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class LoadResult:
    """Latency quantiles (seconds) at one offered load."""

    fraction: float  # of the worker's measured throughput
    offered: float  # events/s the replay actually sent
    events: int
    quantiles: dict[float, float]

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line, milliseconds for the quantiles."""
        tag = f"latency.{round(self.fraction * 100)}pct"
        out = {f"{tag}.offered_per_s": round(self.offered, 1), f"{tag}.events": float(self.events)}
        for q, v in self.quantiles.items():
            out[f"{tag}.p{round(q * 100)}_ms"] = round(v * 1000, 2) if not math.isnan(v) else math.nan
        return out


def histogram_delta(after: dict[str, float], before: dict[str, float], name: str) -> dict[str, float]:
    """The bucket counts of histogram `name` accumulated between two scrapes."""
    prefix = f"{name}_bucket{{"
    return {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix)}


def measure_latency(workload: Workload, spec: RunSpec, throughput: float) -> list[LoadResult]:
    """p50/p95/p99 at each configured fraction of `throughput` (events/s)."""
    cfg = workload.config
    name = f"latency-{spec.name(cfg)}"
    topic = f"in-{name}-{workload.tag}"
    settings = workload.settings(name, spec, input_topic=topic)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, workload.log_path(f"worker-{name}")).start()
    results = []
    try:
        worker.wait_ready(cfg.start_cap_s)
        sent = warm_up(workload, [worker], topic)
        for i, fraction in enumerate(cfg.latency_loads):
            rate = max(1.0, fraction * throughput)
            events = cycled(workload.events, max(100, int(rate * cfg.latency_s)), f"load{i}")
            before = worker.metrics()
            summary = asyncio.run(replay_events(settings, events, topic, Pace(rate=rate)))
            sent += summary.sent
            wait_applied([worker], sent, cfg.run_cap_s)
            after = worker.metrics()
            delta = histogram_delta(after, before, LATENCY_METRIC)
            quantiles = {q: histogram_quantile(delta, LATENCY_METRIC, q) for q in QUANTILES}
            results.append(LoadResult(fraction, summary.rate, summary.sent, quantiles))
            log.info(
                "latency at %.0f%% load (%.0f ev/s offered): p50 %.1f ms, p99 %.1f ms",
                fraction * 100,
                summary.rate,
                quantiles[0.5] * 1000,
                quantiles[0.99] * 1000,
            )
    finally:
        worker.stop()
        drop_topics(workload, f"{name}-{workload.tag}")
    return results

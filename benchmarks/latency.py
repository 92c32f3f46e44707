"""Latency of the worker at fractions of its measured throughput: end to end, and its own histogram.

One fresh worker on a fresh topic; after a warm-up, each offered load sends new users
(relabelled events, so nothing is dropped as a duplicate) for a bounded time. The headline is
end to end, measured outside the worker (benchmarks/e2e.py): from the producer's send of an
event to its output record being readable by a consumer, exact quantiles over every event.
Beside it, the same load's quantiles of the worker's operational histogram
`behavior_stream_processing_latency_seconds` (fetched to outputs acknowledged, the wait before
processing included), from the difference of two scrapes. Then the same loads through a relay
that does no work (benchmarks/relay.py), for the floor the broker and the clients put under
every figure.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, replace

from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.promtext import histogram_quantile
from behavior_stream.testing.workerproc import WorkerProcess
from benchmarks.child import Child, child_env
from benchmarks.config import RunSpec
from benchmarks.e2e import QUANTILES, Latencies, measure_load
from benchmarks.worker_runs import wait_applied, warm_up
from benchmarks.workload import Workload, cycled, drop_topics

log = logging.getLogger(__name__)

LATENCY_METRIC = "behavior_stream_processing_latency_seconds"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2) if not math.isnan(seconds) else math.nan


@dataclass(frozen=True)
class LoadResult:
    """End-to-end latencies and the worker's histogram quantiles (seconds) at one offered load."""

    fraction: float  # of the worker's measured throughput
    offered: float  # events/s the producer actually sent
    e2e: Latencies
    worker: dict[float, float]
    floor: Latencies | None = None  # the same load through the no-work relay

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line, milliseconds for the quantiles."""
        tag = f"latency.{round(self.fraction * 100)}pct"
        out = {
            f"{tag}.offered_per_s": round(self.offered, 1),
            f"{tag}.events": float(self.e2e.sent),
            f"{tag}.unmatched": float(self.e2e.unmatched),
            f"{tag}.max_ms": _ms(float(self.e2e.samples.max()) if len(self.e2e.samples) else math.nan),
        }
        for q in QUANTILES:
            out[f"{tag}.p{round(q * 100)}_ms"] = _ms(self.e2e.quantile(q))
            out[f"{tag}.worker_p{round(q * 100)}_ms"] = _ms(self.worker[q])
            if self.floor is not None:
                out[f"{tag}.floor_p{round(q * 100)}_ms"] = _ms(self.floor.quantile(q))
        return out


def histogram_delta(after: dict[str, float], before: dict[str, float], name: str) -> dict[str, float]:
    """The bucket counts of histogram `name` accumulated between two scrapes."""
    prefix = f"{name}_bucket{{"
    return {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix)}


def measure_latency(workload: Workload, spec: RunSpec, throughput: float) -> list[LoadResult]:
    """End-to-end and worker-histogram p50/p95/p99 at each configured fraction of `throughput`."""
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
            e2e = asyncio.run(measure_load(settings, topic, events, rate))
            sent += e2e.sent
            wait_applied([worker], sent, cfg.start_cap_s)  # a load near capacity may leave a backlog
            delta = histogram_delta(worker.metrics(), before, LATENCY_METRIC)
            hist = {q: histogram_quantile(delta, LATENCY_METRIC, q) for q in QUANTILES}
            offered = e2e.sent / e2e.send_seconds if e2e.send_seconds > 0 else math.nan
            results.append(LoadResult(fraction, offered, e2e, hist))
            log.info(
                "latency at %.0f%% load (%.0f ev/s offered): end to end p50 %.1f ms, p99 %.1f ms "
                "(%d unmatched); worker histogram p50 %.1f ms, p99 %.1f ms",
                fraction * 100,
                offered,
                e2e.quantile(0.5) * 1000,
                e2e.quantile(0.99) * 1000,
                e2e.unmatched,
                hist[0.5] * 1000,
                hist[0.99] * 1000,
            )
    finally:
        worker.stop()
        drop_topics(workload, f"{name}-{workload.tag}")
    floors = measure_floor(workload, spec, [r.offered for r in results])
    return [replace(r, floor=f) for r, f in zip(results, floors, strict=True)]


def measure_floor(workload: Workload, spec: RunSpec, rates: list[float]) -> list[Latencies]:
    """End-to-end latencies of the no-work relay at each of `rates`, `floor_s` seconds each."""
    cfg = workload.config
    name = f"floor-{spec.name(cfg)}"
    settings = workload.settings(name, spec, input_topic=f"in-{name}-{workload.tag}")
    asyncio.run(ensure_topics(settings, [settings.input_topic, settings.representations_topic]))
    out = []
    try:
        with Child("benchmarks.relay", child_env(settings), workload.log_path(name)):
            # Until the relay answers: its start must not count in the first load's figures.
            warm_events = cycled(workload.events, 200, "floor-warm")
            warm = asyncio.run(measure_load(settings, settings.input_topic, warm_events, 100))
            if warm.unmatched:
                raise RuntimeError(f"the relay did not answer {warm.unmatched} warm-up events")
            for i, rate in enumerate(rates):
                events = cycled(workload.events, max(100, int(rate * cfg.floor_s)), f"floor{i}")
                floor = asyncio.run(measure_load(settings, settings.input_topic, events, rate))
                log.info(
                    "relay floor at %.0f ev/s: end to end p50 %.1f ms, p99 %.1f ms (%d unmatched)",
                    rate,
                    floor.quantile(0.5) * 1000,
                    floor.quantile(0.99) * 1000,
                    floor.unmatched,
                )
                out.append(floor)
    finally:
        drop_topics(workload, f"{name}-{workload.tag}")
    return out

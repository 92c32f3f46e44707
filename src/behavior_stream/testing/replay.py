"""Replay an event log into Kafka, keyed by user, in event-time order, paced or as fast as possible.

Producing uses the worker's own batch loop (`send_batched`: aiokafka's batch API per
partition; appending to a batch costs microseconds, `send()` tens of them), so replay is not
the bottleneck of a benchmark or the demo, and an oversized record fails as it does there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

from behavior_stream.schema.events import Event
from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BATCH_LIMITS, Record, send_batched
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 2000  # events per pacing step


@dataclass(frozen=True)
class Pace:
    """How fast to replay: `speed` x event time, a `rate` cap in events/s, or neither (max)."""

    speed: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise ValueError("choose one of speed and rate")
        for name in ("speed", "rate"):
            value = getattr(self, name)
            # NaN passes `<= 0` and infinity overflows the chunk size: both refused here.
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")


@dataclass
class ReplaySummary:
    """What a replay sent."""

    sent: int = 0
    seconds: float = 0.0
    first_ts: int | None = None
    last_ts: int | None = None
    by_partition: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Events per second over the whole replay."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Producer:
    """Keyed, batched producing of raw records to one topic."""

    def __init__(self, settings: Settings) -> None:
        self._producer = AIOKafkaProducer(linger_ms=5, **BATCH_LIMITS, **client_options(settings))
        self._n: dict[str, int] = {}

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send_keyed(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]], partition: int | None = None
    ) -> dict[int, int]:
        """Send (key, value) records (partition by key, or round-robin for None keys); waits for acks."""
        n = self._n.get(topic)
        if n is None:
            n = self._n[topic] = len(await self._producer.partitions_for(topic))
        counts: dict[int, int] = {}
        routed: list[Record] = []
        for i, (key, value) in enumerate(records):
            p = partition if partition is not None else (partition_for(key, n) if key is not None else i % n)
            routed.append((topic, p, key, value))
            counts[p] = counts.get(p, 0) + 1
        await send_batched(self._producer, routed)
        return counts


async def replay_events(
    settings: Settings,
    events: Sequence[Event],
    topic: str | None = None,
    pace: Pace | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Produce `events` (already in event-time order) keyed by user_id; `progress(sent, last_ts)`."""
    topic = topic or settings.input_topic
    pace = pace or Pace()
    summary = ReplaySummary()
    if not events:
        return summary
    start = time.perf_counter()
    t0 = events[0].ts
    # Under a rate cap, send ~50 small chunks a second so the offered load stays smooth.
    step = max(1, min(CHUNK, int(pace.rate / 50))) if pace.rate is not None else CHUNK
    async with Producer(settings) as producer:
        for i in range(0, len(events), step):
            chunk = events[i : i + step]
            await _wait_for(pace, start, summary.sent, chunk[0].ts - t0)
            counts = await producer.send_keyed(
                topic, [(e.user_id.encode("utf-8"), e.to_json()) for e in chunk]
            )
            for p, c in counts.items():
                summary.by_partition[p] = summary.by_partition.get(p, 0) + c
            summary.sent += len(chunk)
            if progress is not None:
                progress(summary.sent, chunk[-1].ts)
    summary.seconds = time.perf_counter() - start
    summary.first_ts, summary.last_ts = events[0].ts, events[-1].ts
    return summary


async def _wait_for(pace: Pace, start: float, sent: int, event_offset_ms: int) -> None:
    """Sleep until the next chunk is due under the pace."""
    if pace.speed is not None:
        due = start + event_offset_ms / 1000.0 / pace.speed
    elif pace.rate is not None:
        due = start + sent / pace.rate
    else:
        return
    delay = due - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)

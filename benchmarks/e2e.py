"""End-to-end latency measured outside the worker: a producer's send of an event to its output
record being readable by a consumer.

One asyncio loop runs a paced producer and a consumer of the representations topic. The
producer sends events of fresh users in small chunks on an absolute schedule (it never waits
for acknowledgements, so a slow ack does not shift later sends) and notes each event's send
time under (user, n) with n the user's event count so far. Each representation carries the
user and `events_seen`; an event (user, n) is readable at the read time of the first
representation of that user with `events_seen >= n` (a batch emits one output per user for
all of that user's events in it). Quantiles are exact, over every matched event.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from behavior_stream.schema.events import Event
from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BATCH_LIMITS, issue_batched
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)

TICK_S = 0.005  # the producer's pacing step: chunks of rate * 5 ms
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Latencies:
    """Per-event end-to-end latencies (seconds) of one load, and what could not be matched."""

    samples: np.ndarray  # shape (matched events,)
    sent: int
    send_seconds: float

    @property
    def unmatched(self) -> int:
        """Events with no output seen before the deadline."""
        return self.sent - len(self.samples)

    def quantile(self, q: float) -> float:
        """The exact q-quantile of the samples (a sample value; NaN if none)."""
        if not len(self.samples):
            return math.nan
        return float(np.quantile(self.samples, q, method="inverted_cdf"))


async def _produce(
    producer: AIOKafkaProducer,
    topic: str,
    events: Sequence[Event],
    rate: float,
    sent_at: dict[tuple[str, int], float],
) -> float:
    """Send `events` at `rate`/s; returns the seconds the sending took."""
    n_parts = len(await producer.partitions_for(topic))
    seen: dict[str, int] = {}
    step = max(1, round(rate * TICK_S))
    acks = []
    start = time.perf_counter()
    for i in range(0, len(events), step):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        records = []
        now = time.time()
        for e in events[i : i + step]:
            key = e.user_id.encode("utf-8")
            n = seen[e.user_id] = seen.get(e.user_id, 0) + 1
            sent_at[(e.user_id, n)] = now
            records.append((topic, partition_for(key, n_parts), key, e.to_json()))
        acks.append(await issue_batched(producer, records))
    await asyncio.gather(*acks)
    return time.perf_counter() - start


async def _consume(
    consumer: AIOKafkaConsumer, readable: dict[str, list[tuple[int, float]]], stop: asyncio.Event
) -> None:
    """Note (events_seen, read time) of every representation, per user, until `stop`."""
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=50, max_records=10_000)
        now = time.time()
        for records in batch.values():
            for rec in records:
                if rec.value is None:
                    continue
                msg = orjson.loads(rec.value)
                readable.setdefault(msg["user_id"], []).append((int(msg["events_seen"]), now))


def match(sent_at: dict[tuple[str, int], float], readable: dict[str, list[tuple[int, float]]]) -> list[float]:
    """Latency of each sent event that some output covers (see the module docstring)."""
    out = []
    for user_outputs in readable.values():
        user_outputs.sort(key=lambda o: o[1])
    for (user, n), sent in sent_at.items():
        for seen, read in readable.get(user, ()):
            if seen >= n:
                out.append(read - sent)
                break
    return out


async def measure_load(
    settings: Settings, topic: str, events: Sequence[Event], rate: float, settle_s: float = 10.0
) -> Latencies:
    """Offer `events` at `rate`/s to the worker's input `topic`; every event's end-to-end latency."""
    opts = client_options(settings)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=5, **opts)
    producer = AIOKafkaProducer(linger_ms=0, **BATCH_LIMITS, **opts)
    await consumer.start()
    await producer.start()
    try:
        out_topic = settings.representations_topic
        tps = [TopicPartition(out_topic, p) for p in sorted(await producer.partitions_for(out_topic))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: only outputs of this load are read
            await consumer.position(tp)
        sent_at: dict[tuple[str, int], float] = {}
        readable: dict[str, list[tuple[int, float]]] = {}
        stop = asyncio.Event()
        reader = asyncio.ensure_future(_consume(consumer, readable, stop))
        seconds = await _produce(producer, topic, events, rate, sent_at)
        deadline = time.monotonic() + settle_s
        users = {u for u, _ in sent_at}
        final: dict[str, int] = {}
        for user, n in sent_at:
            final[user] = max(final.get(user, 0), n)
        while time.monotonic() < deadline:
            if all(readable.get(u) and max(s for s, _ in readable[u]) >= final[u] for u in users):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await reader
        samples = np.asarray(match(sent_at, readable), dtype=np.float64)
        return Latencies(samples, len(sent_at), seconds)
    finally:
        await producer.stop()
        await consumer.stop()

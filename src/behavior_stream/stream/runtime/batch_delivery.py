"""Whole fetch batches from Faust's consumer to the processing core, past the per-event Stream path.

Faust delivers records one at a time: a `Message` per record, `Conductor.on_message`, a put and
a get on the agent's flow-control queue, an `Event`, the Monitor's sensors, an ack. Measured on
the benchmark that is ~136 us per event, two thirds of the worker's time. The input topics
(the events topic and its by-user repartition) skip all of it:

- `BatchConsumer._getmany` (Faust's fetch hook, called by its Fetcher with a whole aiokafka
  fetch) takes the input topics' records out of the fetch as plain `InputRecord`s and puts them
  into the `BatchFeed`, one `InputBatch` per fetch; every other topic's records (standby and
  changelog reads, anything else subscribed) go on through Faust as before.
- The worker's batch loop (agents.py) takes batches from the feed, processes them, and after
  the Committer acknowledged a batch's writes calls `BatchFeed.written`, which advances each
  partition's committable offset.
- Faust's own commit path commits those offsets (`_new_offset`), on its timer and before every
  rebalance and shutdown, so the input offset never passes state not in the changelog.
- Rebalances: Faust calls `wait_empty` after stopping the flow; `BatchFeed.quiesce` drops
  the batches not yet taken (after the rebalance Faust seeks every partition back to its
  committed offset, so they are fetched again) and waits until the batches taken are written.
  A batch fetched before a rebalance (another generation, or flow stopped) is dropped when taken.

Everything else Faust does stays: the group and its assignment (the input topic is still in
the Conductor's topics), table recovery and standbys, timers, web views, the worker command.
This relies on faust-streaming internals (`Consumer._getmany`, `_new_offset`,
`_filter_tps_with_pending_acks`, `wait_empty`), hence the exact pin in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from behavior_stream.stream.core.records import InputRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InputBatch:
    """Records of one or more fetches, in offset order per partition, and when they arrived."""

    records: list[InputRecord]
    generation: int  # the consumer group generation they were fetched in
    fetched_at: float  # wall clock of the (first) fetch

    def last_offsets(self) -> dict[tuple[str, int], int]:
        """The highest offset of each (topic, partition) in the batch."""
        out: dict[tuple[str, int], int] = {}
        for r in self.records:
            out[(r.topic, r.partition)] = r.offset  # offsets ascend per partition
        return out


class BatchFeed:
    """The hand-off between the consumer's fetches and the worker's batch loop, and the input
    offsets whose batches are written (Faust commits those)."""

    def __init__(
        self, topics: frozenset[str], max_batch: int, capacity: int, fetch_wait_ms: int = 10
    ) -> None:
        self.topics = topics
        self.max_batch = max_batch
        self.capacity = capacity  # records queued at most; the fetcher waits beyond
        self.fetch_wait_ms = fetch_wait_ms  # the consumer's fetch_max_wait_ms (see BatchConsumerThread)
        self.valid: Callable[[int], bool] = lambda generation: True  # set by the consumer
        self._queue: deque[InputBatch] = deque()
        self._queued = 0
        self._changed = asyncio.Event()
        self._taken = 0  # batches taken, not yet written or dropped
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.abandoned = False
        self.committable: dict[TP, int] = {}  # next offset to commit, per input partition

    async def put(self, records: list[InputRecord], generation: int, fetched_at: float) -> None:
        """Queue one fetch's input records (waits while the queue is full)."""
        while self._queued >= self.capacity and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        if self._closed or not self.valid(generation):
            return  # a rebalance or shutdown came meanwhile: fetched again after the seek
        self._queue.append(InputBatch(records, generation, fetched_at))
        self._queued += len(records)
        self._changed.set()

    async def take(self) -> InputBatch | None:
        """The next batch: what is queued, up to `max_batch` records; None once closed."""
        while True:
            while not self._queue:
                if self._closed:
                    return None
                self._changed.clear()
                await self._changed.wait()
            batch = self._next()
            if self.valid(batch.generation):
                self._taken += 1
                self._idle.clear()
                return batch
            log.info("dropped %d records fetched before a rebalance", len(batch.records))

    def _next(self) -> InputBatch:
        first = self._queue.popleft()
        records, generation = first.records, first.generation
        if len(records) > self.max_batch:  # the rest stays first in line, in offset order
            self._queue.appendleft(InputBatch(records[self.max_batch :], generation, first.fetched_at))
            records = records[: self.max_batch]
        else:
            while self._queue and self._queue[0].generation == generation:
                more = self._queue[0].records
                if len(records) + len(more) > self.max_batch:
                    break
                records = records + self._queue.popleft().records
        self._queued -= len(records)
        self._changed.set()  # room for the fetcher
        return InputBatch(records, generation, first.fetched_at)

    def written(self, batch: InputBatch) -> None:
        """The batch's outputs, state and fences are acknowledged: its offsets may be committed."""
        for (topic, partition), offset in batch.last_offsets().items():
            tp = TP(topic, partition)
            if offset + 1 > self.committable.get(tp, -1):
                self.committable[tp] = offset + 1
        self.release()

    def release(self) -> None:
        """A taken batch is done with without being written (nothing of it is committed)."""
        self._taken = max(0, self._taken - 1)
        if self._taken == 0:
            self._idle.set()

    def abandon(self) -> None:
        """The batch loop failed: nothing taken will be written; close, so no wait hangs on it."""
        self.abandoned = True
        self._taken = 0
        self._idle.set()
        self.close()

    async def quiesce(self) -> None:
        """Drop the queued batches and wait until every taken batch is written."""
        if self._queue:
            log.info("rebalance or stop: %d queued input records dropped (fetched again)", self._queued)
        self._queue.clear()
        self._queued = 0
        self._changed.set()
        await self._idle.wait()

    def retain(self, assigned: set[TP]) -> None:
        """Forget the committable offsets of partitions no longer assigned."""
        for tp in [tp for tp in self.committable if tp not in assigned]:
            del self.committable[tp]

    def close(self) -> None:
        """No more batches: `take` returns None once the queue is empty, `put` drops."""
        self._closed = True
        self._changed.set()


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the feed's fetch wait instead of Faust's fixed 1500 ms.

    Tansu answers a fetch only when its wait is over, data or not (measured: p50 388 ms from
    produce to consume at fetch_max_wait_ms=1500, 6 ms at 5): with Faust's value an idle
    worker sees each event up to 1.5 s late. Apache Kafka answers as soon as data arrives,
    so a short wait only costs it more empty fetches while idle.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        feed: BatchFeed = self.transport.feed  # type: ignore[attr-defined]
        consumer._fetch_max_wait_ms = feed.fetch_wait_ms  # read by its start(), which follows
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, except that the input topics' records go to a `BatchFeed`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def feed(self) -> BatchFeed:
        """The feed of the transport that created this consumer."""
        feed: BatchFeed = self.transport.feed  # type: ignore[attr-defined]
        return feed

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        generation = self.app.consumer_generation_id
        records = await super()._getmany(active_partitions, timeout)
        feed = self.feed
        if not records or not any(tp.topic in feed.topics for tp in records):
            return records
        now, mono = time.time(), time.monotonic()
        rest: dict[Any, Any] = {}
        mine: list[InputRecord] = []
        inbound = self.app.monitor.stream_inbound_time  # Faust's stuck-stream check reads it
        for tp, batch in records.items():
            if tp.topic not in feed.topics:
                rest[tp] = batch
                continue
            inbound[tp] = mono
            topic, partition = tp.topic, tp.partition
            mine.extend(InputRecord(topic, partition, r.offset, r.key, r.value, now) for r in batch)
        if mine and self.flow_active and not self.should_stop:
            await feed.put(mine, generation, now)
        return rest

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.feed.topics:
            return self.feed.committable.get(tp)
        return super()._new_offset(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in list(self.feed.committable):
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    async def wait_empty(self) -> None:
        """Before Faust's own wait (and its commit): the taken batches written, the rest dropped."""
        await self.feed.quiesce()
        await super().wait_empty()

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Faust's handling, after dropping the offsets of partitions revoked meanwhile."""
        self.feed.retain(set(assigned))
        await super().on_partitions_assigned(assigned, generation_id)


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose consumer delivers the input topics to a feed."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, feed: BatchFeed, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feed = feed


def install(app: Any, feed: BatchFeed) -> None:
    """Make `app` consume through a `BatchTransport` (before anything reaches `app.transport`)."""
    app.transport = BatchTransport(app.conf.broker_consumer, app, feed=feed)

    def valid(generation: int) -> bool:
        consumer = app.consumer
        return generation == app.consumer_generation_id and consumer.flow_active and not consumer.should_stop

    feed.valid = valid

"""Batched producing with aiokafka's batch API: the one batch-building loop of the package.

Per-message `send()` costs tens of microseconds; appending to a per-partition batch costs a
few, which keeps the worker's output path well below the framework's own per-event cost.
`send_batched` is that loop; the worker's `BatchSender` (outputs, state, fences; see
checkpoint.py for their order) and replay's producer both use it, so a record too large for
any batch fails the same way everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.core.records import OutMessage

log = logging.getLogger(__name__)

# Producer size limits of every batching producer (pass as `AIOKafkaProducer(**BATCH_LIMITS)`).
BATCH_LIMITS = {"max_batch_size": 512 * 1024, "max_request_size": 4 * 1024 * 1024}

Record = tuple[str, int, bytes | None, bytes | None]  # (topic, partition, key, value)


async def send_batched(
    producer: AIOKafkaProducer,
    records: Iterable[Record],
    max_request_size: int = BATCH_LIMITS["max_request_size"],
) -> None:
    """Send records in per-partition batches and wait until every batch is acknowledged.

    A full batch is sent at once and a new one takes over, so each partition's records keep
    their order; the partly filled batches follow in order of first use. `max_request_size`
    must be the producer's: a record larger than that raises ValueError before it is sent.
    """
    await issue_batched(producer, records, max_request_size)


async def issue_batched(
    producer: AIOKafkaProducer,
    records: Iterable[Record],
    max_request_size: int = BATCH_LIMITS["max_request_size"],
) -> asyncio.Future[Any]:
    """Hand records to the producer in per-partition batches (as `send_batched`) and return one
    future for all their acknowledgements, without waiting for them.

    Once this returns, every batch is queued in the producer, which keeps one request in flight
    per partition: a later call's records land after these in each partition they share.
    """
    batches: dict[tuple[str, int], Any] = {}
    futures = []
    for topic, partition, key, value in records:
        batch = batches.get((topic, partition))
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:  # full: it goes now, the partition's next batch takes the record
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = _batch_of_one(producer, topic, partition, key, value, max_request_size)
            batches[(topic, partition)] = batch
    for (topic, partition), batch in batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return asyncio.gather(*futures)


def _batch_of_one(
    producer: AIOKafkaProducer, topic: str, partition: int, key: bytes | None, value: bytes | None, limit: int
) -> Any:
    """A new batch holding just this record.

    aiokafka's batches take a first record of any size, and `send_batch` (unlike `send`) does
    not check the request limit, so an oversized record is refused here, by name, rather than
    by the broker later or not at all.
    """
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    if size > limit:
        raise ValueError(
            f"record for {topic}[{partition}] is {size} bytes and cannot fit even an empty batch "
            f"(limit: max_request_size={limit} bytes)"
        )
    batch = producer.create_batch()
    batch.append(key=key, value=value, timestamp=None)
    return batch


class BatchSender:
    """Owns an aiokafka producer and sends groups of records partition by partition."""

    def __init__(self, **client_options: Any) -> None:
        self._options = client_options
        self._producer_or_none: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._partitions: dict[str, int] = {}

    @property
    def _producer(self) -> AIOKafkaProducer:
        assert self._producer_or_none is not None, "BatchSender.start() was not awaited"
        return self._producer_or_none

    async def start(self) -> None:
        """Connect the producer (idempotent; aiokafka needs the running loop, so not in __init__)."""
        async with self._lock:
            if self._producer_or_none is None:
                producer = AIOKafkaProducer(acks="all", linger_ms=0, **BATCH_LIMITS, **self._options)
                await producer.start()
                self._producer_or_none = producer

    async def stop(self) -> None:
        """Close the producer (every send was already awaited, so nothing is pending)."""
        producer, self._producer_or_none = self._producer_or_none, None
        if producer is not None:
            await producer.stop()

    async def partition_count(self, topic: str) -> int:
        """Number of partitions of a topic (cached)."""
        n = self._partitions.get(topic)
        if n is None:
            parts = await self._producer.partitions_for(topic)
            n = self._partitions[topic] = len(parts)
        return n

    async def send(self, records: Iterable[Record]) -> None:
        """Send (topic, partition, key, value) records and wait until all are acknowledged."""
        await (await self.issue(records))

    async def issue(self, records: Iterable[Record]) -> asyncio.Future[Any]:
        """Queue records in the producer; the returned future resolves once all are acknowledged."""
        return await issue_batched(self._producer, records)

    async def send_messages(self, messages: Iterable[OutMessage]) -> None:
        """Send output messages, partitioned by key where no partition is given."""
        await (await self.issue_messages(messages))

    async def issue_messages(self, messages: Iterable[OutMessage]) -> asyncio.Future[Any]:
        """Queue output messages (partitioned by key where no partition is given), without waiting."""
        # Partition counts looked up once per topic, not awaited per message: a batch has a few
        # thousand messages over three or four topics.
        counts: dict[str, int] = {}
        records: list[Record] = []
        for m in messages:
            part = m.partition
            if part is None:
                n = counts.get(m.topic)
                if n is None:
                    n = counts[m.topic] = await self.partition_count(m.topic)
                part = partition_for(m.key, n)
            records.append((m.topic, part, m.key, m.value))
        return await self.issue(records)

    async def send_one(self, topic: str, partition: int, key: bytes, value: bytes | None) -> int:
        """Send a single record alone in its batch, wait for it and return its offset.

        Used as a fence after a burst: Tansu reports a partition's end offset as the base offset
        of its last record batch + 1, so a one-record batch makes the end offset exact again.
        """
        return await (await self.issue_one(topic, partition, key, value))

    async def issue_one(
        self, topic: str, partition: int, key: bytes, value: bytes | None
    ) -> asyncio.Future[int]:
        """Queue a single record alone in its own batch; the future resolves to its offset once
        acknowledged. The batch is ours (`send_batch`), so no later `send()` can join it."""
        batch = _batch_of_one(self._producer, topic, partition, key, value, BATCH_LIMITS["max_request_size"])
        ack = await self._producer.send_batch(batch, topic, partition=partition)
        return asyncio.ensure_future(_offset_of(ack))


async def _offset_of(ack: Any) -> int:
    return int((await ack).offset)

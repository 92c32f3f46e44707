"""Batched producing with aiokafka's batch API: outputs first, then state, then a fence.

Per-message `send()` costs tens of microseconds; appending to a per-partition batch costs a
few, which keeps the worker's output path well below the framework's own per-event cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from behavior_stream.stream.core.records import OutMessage
from behavior_stream.stream.runtime.kafka import partition_for

log = logging.getLogger(__name__)


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
                producer = AIOKafkaProducer(
                    acks="all",
                    linger_ms=0,
                    max_batch_size=512 * 1024,
                    max_request_size=4 * 1024 * 1024,
                    **self._options,
                )
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

    async def send(self, records: Iterable[tuple[str, int, bytes | None, bytes | None]]) -> None:
        """Send (topic, partition, key, value) records and wait until all are acknowledged."""
        batches: dict[tuple[str, int], Any] = {}
        futures = []
        for topic, partition, key, value in records:
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = self._producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await self._producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = self._producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"record of {len(value or b'')} bytes does not fit a batch for {topic}")
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                futures.append(await self._producer.send_batch(batch, topic, partition=partition))
        if futures:
            await asyncio.gather(*futures)

    async def send_messages(self, messages: Iterable[OutMessage]) -> None:
        """Send output messages, partitioned by key where no partition is given."""
        records = []
        for m in messages:
            part = m.partition
            if part is None:
                part = partition_for(m.key, await self.partition_count(m.topic))
            records.append((m.topic, part, m.key, m.value))
        await self.send(records)

    async def send_one(self, topic: str, partition: int, key: bytes, value: bytes | None) -> int:
        """Send a single record alone in its batch, wait for it and return its offset.

        Used as a fence after a burst: Tansu reports a partition's end offset as the base offset
        of its last record batch + 1, so a one-record batch makes the end offset exact again.
        """
        meta = await (await self._producer.send(topic, value, key=key, partition=partition))
        return int(meta.offset)

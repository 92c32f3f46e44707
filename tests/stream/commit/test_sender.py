"""The one producer batch loop: per-partition order, overflow into a new batch, oversized records."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BatchSender, send_batched
from behavior_stream.stream.core.records import OutMessage


class FakeProducer:
    """Batches as aiokafka builds them (small, to overflow), sends recorded instead of made."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, int]] = []  # (topic, partition, records in the batch)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)  # 0: no compression

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.record_count()))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_full_batches_go_first_and_every_record_is_sent_once() -> None:
    producer = FakeProducer(batch_size=300)
    records = [("t", i % 2, b"k", b"v" * 40) for i in range(12)]
    asyncio.run(send_batched(producer, records))
    # Four such records fill a 300-byte batch: each full batch leaves as the fifth arrives, then
    # the partial ones follow in order of first use.
    assert producer.sent == [("t", 0, 4), ("t", 1, 4), ("t", 0, 2), ("t", 1, 2)]


def test_a_record_larger_than_a_batch_but_within_the_request_limit_goes_alone() -> None:
    producer = FakeProducer(batch_size=300)
    records = [("t", 0, b"k", b"small"), ("t", 0, b"k", b"x" * 1000), ("t", 0, b"k", b"small")]
    asyncio.run(send_batched(producer, records, max_request_size=4096))
    assert producer.sent == [("t", 0, 1), ("t", 0, 1), ("t", 0, 1)]


def test_a_record_that_fits_no_batch_is_refused_by_name() -> None:
    producer = FakeProducer(batch_size=300)
    records = [("t", 0, b"k", b"small"), ("out", 3, b"k", b"x" * 5000)]
    with pytest.raises(ValueError, match=r"out\[3\] is 50\d\d bytes .* max_request_size=4096 bytes"):
        asyncio.run(send_batched(producer, records, max_request_size=4096))
    assert producer.sent == []  # nothing of the refused call was sent


class CountingSender(BatchSender):
    """A BatchSender over the fake producer, counting partition-count lookups."""

    def __init__(self, producer: FakeProducer, partitions: dict[str, int]) -> None:
        super().__init__()
        self._producer_or_none = producer  # the fake stands in for aiokafka's producer
        self.partitions = partitions
        self.lookups: list[str] = []

    async def partition_count(self, topic: str) -> int:
        self.lookups.append(topic)
        return self.partitions[topic]


def test_messages_go_to_their_keys_partition_with_one_count_lookup_per_topic() -> None:
    producer = FakeProducer(batch_size=1 << 16)
    sender = CountingSender(producer, {"reps": 4, "recs": 3})
    keys = [f"user{i}".encode() for i in range(40)]
    messages = [OutMessage(t, k, b"v") for k in keys for t in ("reps", "recs")]
    messages.append(OutMessage("reps", b"pinned", b"v", partition=2))  # an explicit partition wins

    async def run() -> None:
        await (await sender.issue_messages(messages))

    asyncio.run(run())
    assert sorted(sender.lookups) == ["recs", "reps"]
    expected = Counter((m.topic, partition_for(m.key, sender.partitions[m.topic])) for m in messages[:-1])
    expected[("reps", 2)] += 1
    got: Counter[tuple[str, int]] = Counter()
    for topic, partition, n in producer.sent:
        got[(topic, partition)] += n
    assert got == expected

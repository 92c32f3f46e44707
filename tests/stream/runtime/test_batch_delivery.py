"""The batch feed between Faust's consumer and the batch loop: whole fetches in order, bounded,
offsets committable only once written, nothing fetched before a rebalance processed after it.
(The consumer hook itself runs in every worker test against the real broker.)"""

from __future__ import annotations

import asyncio

from faust.types import TP

from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.runtime.batch_delivery import BatchFeed


def records(partition: int, start: int, n: int) -> list[InputRecord]:
    return [InputRecord("in", partition, o, b"k", b"v", 0.0) for o in range(start, start + n)]


def offsets(batch: object) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in batch.records]  # type: ignore[attr-defined]


def test_fetches_are_merged_up_to_max_batch_and_split_beyond_in_offset_order() -> None:
    async def scenario() -> None:
        feed = BatchFeed(frozenset({"in"}), max_batch=4, capacity=100)
        await feed.put(records(0, 0, 2), 1, 0.0)
        await feed.put(records(1, 0, 2), 1, 0.0)
        await feed.put(records(2, 0, 6), 1, 0.0)
        first = await feed.take()
        assert first is not None and offsets(first) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        second, third = await feed.take(), await feed.take()
        assert second is not None and offsets(second) == [(2, o) for o in range(4)]
        assert third is not None and offsets(third) == [(2, 4), (2, 5)]

    asyncio.run(scenario())


def test_offsets_are_committable_only_once_a_batch_is_written() -> None:
    async def scenario() -> None:
        feed = BatchFeed(frozenset({"in"}), max_batch=10, capacity=100)
        await feed.put(records(0, 5, 3) + records(3, 40, 2), 1, 0.0)
        batch = await feed.take()
        assert batch is not None and feed.committable == {}
        feed.written(batch)
        assert feed.committable == {TP("in", 0): 8, TP("in", 3): 42}
        feed.retain({TP("in", 3)})  # partition 0 was revoked meanwhile
        assert feed.committable == {TP("in", 3): 42}

    asyncio.run(scenario())


def test_quiesce_drops_the_queue_and_waits_for_the_batch_taken() -> None:
    async def scenario() -> None:
        feed = BatchFeed(frozenset({"in"}), max_batch=2, capacity=100)
        await feed.put(records(0, 0, 6), 1, 0.0)
        taken = await feed.take()
        assert taken is not None
        quiet = asyncio.ensure_future(feed.quiesce())
        await asyncio.sleep(0.01)
        assert not quiet.done()  # the batch taken is still being written
        feed.written(taken)
        await asyncio.wait_for(quiet, 1)
        # The rest of the fetch was dropped (fetched again from the committed offset).
        feed.close()
        assert await feed.take() is None

    asyncio.run(scenario())


def test_batches_of_an_older_generation_are_dropped_when_taken() -> None:
    async def scenario() -> None:
        generation = 1
        feed = BatchFeed(frozenset({"in"}), max_batch=10, capacity=100)
        feed.valid = lambda g: g == generation
        await feed.put(records(0, 0, 3), 1, 0.0)
        generation = 2  # a rebalance: the queued fetch belongs to the old assignment
        await feed.put(records(0, 0, 2), 2, 0.0)
        batch = await feed.take()
        assert batch is not None and batch.generation == 2 and offsets(batch) == [(0, 0), (0, 1)]
        await feed.put(records(0, 2, 1), 1, 0.0)  # a late fetch of the old generation: not queued
        feed.close()
        assert await feed.take() is None

    asyncio.run(scenario())


def test_a_full_feed_holds_the_fetcher_until_the_loop_takes() -> None:
    async def scenario() -> None:
        feed = BatchFeed(frozenset({"in"}), max_batch=3, capacity=3)
        await feed.put(records(0, 0, 3), 1, 0.0)
        blocked = asyncio.ensure_future(feed.put(records(0, 3, 3), 1, 0.0))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        first = await feed.take()
        await asyncio.wait_for(blocked, 1)
        second = await feed.take()
        assert first is not None and second is not None
        assert offsets(first) + offsets(second) == [(0, o) for o in range(6)]

    asyncio.run(scenario())

"""The committer writes outputs, then state, then one fence per partition, and erases by tombstone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from behavior_stream.stream.commit.checkpoint import Committer
from behavior_stream.stream.commit.store import StoreKind
from behavior_stream.stream.commit.watermarks import read_mark, watermark_key
from behavior_stream.stream.core.records import BatchResult, OutMessage
from tests.stream.commit.test_store import CHANGELOG, apply, make_store, record


class RecordingSender:
    """Records every send in order; `send_one` answers with increasing offsets. With `hold`, the
    acknowledgements wait until `ack()` releases them (in the order sent), as a broker's would."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.offset = 100
        self.hold = hold
        self.pending: list[tuple[asyncio.Future[Any], Any]] = []

    def _ack(self, result: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self.hold:
            self.pending.append((future, result))
        else:
            future.set_result(result)
        return future

    async def ack(self, n: int | None = None, error: Exception | None = None) -> None:
        """Acknowledge the first `n` pending sends (all if None), or fail them with `error`."""
        take = self.pending[: len(self.pending) if n is None else n]
        del self.pending[: len(take)]
        for future, result in take:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        for _ in range(5):  # let the flushes waiting on them run on
            await asyncio.sleep(0)

    async def issue_messages(self, messages: Iterable[OutMessage]) -> asyncio.Future[Any]:
        self.calls.append(("messages", [m.value for m in messages]))
        return self._ack(None)

    async def issue(
        self, records: Iterable[tuple[str, int, bytes | None, bytes | None]]
    ) -> asyncio.Future[Any]:
        self.calls.append(("records", list(records)))
        return self._ack(None)

    async def send(self, records: Iterable[tuple[str, int, bytes | None, bytes | None]]) -> None:
        await (await self.issue(records))

    async def issue_one(
        self, topic: str, partition: int, key: bytes, value: bytes | None
    ) -> asyncio.Future[Any]:
        self.offset += 1
        self.calls.append(("one", (topic, partition, key, value)))
        return self._ack(self.offset)

    async def send_one(self, topic: str, partition: int, key: bytes, value: bytes | None) -> int:
        return int(await (await self.issue_one(topic, partition, key, value)))


def committer(
    hold: bool = False, kind: StoreKind = "memory", datadir: Path | None = None
) -> tuple[Committer, RecordingSender]:
    sender = RecordingSender(hold)
    return Committer(sender, make_store(kind, datadir), CHANGELOG, depth=4), sender  # type: ignore[arg-type]


def test_flush_sends_outputs_then_state_then_a_fence_per_partition() -> None:
    c, sender = committer()
    result = BatchResult(
        messages=[OutMessage("recs", b"u", b"feed")],
        state_writes={2: {b"u:a": b"A"}},
        # partition 0 only skipped redelivered records: its watermark still moves on
        watermarks={("in", 2): 41, ("in", 0): 7},
    )
    asyncio.run(c.flush(result))
    assert [kind for kind, _ in sender.calls] == ["messages", "records", "one", "one"]
    assert sender.calls[1] == ("records", [(CHANGELOG, 2, b"u:a", b"A")])
    fences = [args for kind, args in sender.calls if kind == "one"]
    assert [(p, orjson.loads(v)) for _, p, _, v in fences] == [(0, {"in": 7}), (2, {"in": 41})]
    # Memory holds the watermarks as recovery would, and the fences' offsets count as reflected.
    assert read_mark(c.store, 2) == {"in": 41} and c.store.partition_of(b"u:a") == 2
    apply(c.store, record(2, 102, watermark_key(2), b"{}"))
    assert read_mark(c.store, 2) == {"in": 41}


def test_erase_writes_the_tombstone_to_the_partition_the_state_was_written_to() -> None:
    c, sender = committer()
    c.store[b"u:a"] = b"A"
    c.store.note_partition(b"u:a", 3)
    assert asyncio.run(c.erase(b"u:a", 1)) is True
    assert b"u:a" not in c.store
    assert sender.calls == [("one", (CHANGELOG, 3, b"u:a", None))]
    # An unknown user still gets a tombstone, on the partition its key maps to.
    assert asyncio.run(c.erase(b"u:b", 1)) is False
    assert sender.calls[-1] == ("one", (CHANGELOG, 1, b"u:b", None))


def test_erase_all_sends_tombstones_then_fences_the_partitions_written() -> None:
    c, sender = committer()
    c.store[watermark_key(1)] = orjson.dumps({"in": 9})
    for key, partition in ((b"u:a", 1), (b"u:b", 1), (b"u:c", 0)):
        c.store[key] = b"x"
        c.store.note_partition(key, partition)
    c.store[b"u:never-written"] = b"x"
    asyncio.run(c.erase_all([b"u:a", b"u:b", b"u:c", b"u:never-written"]))
    assert not any(k.startswith(b"u:") for k in c.store)
    tombstones = [(CHANGELOG, 1, b"u:a", None), (CHANGELOG, 1, b"u:b", None), (CHANGELOG, 0, b"u:c", None)]
    assert sender.calls[0] == ("records", tombstones)
    assert [args[1:] for _, args in sender.calls[1:]] == [
        (0, watermark_key(0), b"{}"),
        (1, watermark_key(1), b'{"in":9}'),
    ]


def batch(user: bytes, value: bytes, offset: int) -> BatchResult:
    """A batch that wrote one user of changelog partition 0 and read input partition 0 up to `offset`."""
    return BatchResult(
        messages=[OutMessage("recs", user, b"feed-" + value)],
        state_writes={0: {b"u:" + user: value}},
        watermarks={("in", 0): offset},
    )


def test_overlapping_batches_keep_the_flush_order_and_the_store_behind_the_view(tmp_path: Path) -> None:
    async def scenario() -> None:
        c, sender = committer(hold=True, kind="rocksdb", datadir=tmp_path)
        written: list[int] = []
        c.view[b"u:a"] = first = b"A1"  # the core's write of batch 1
        f1 = await c.submit(batch(b"a", first, 10), lambda _: written.append(1))
        # Batch 2 is computed while batch 1 is in flight: it sees batch 1's state and watermark.
        assert c.view.get(b"u:a") == b"A1" and read_mark(c.view, 0) == {"in": 10}
        c.view[b"u:a"] = second = b"A2"
        f2 = await c.submit(batch(b"a", second, 20), lambda _: written.append(2))
        assert [kind for kind, _ in sender.calls] == ["messages", "messages"]
        assert c.store.get(b"u:a") is None  # nothing unsent reaches the table's store
        await sender.ack(1)  # batch 1's outputs: its state and fence go out together
        assert [kind for kind, _ in sender.calls[2:]] == ["records", "one"]
        assert sender.calls[2] == ("records", [(CHANGELOG, 0, b"u:a", b"A1")])
        assert c.store.get(b"u:a") == b"A1" and c.view.get(b"u:a") == b"A2"
        await sender.ack(1)  # batch 2's outputs: its state waits for batch 1's flush
        assert len(sender.calls) == 4 and written == []
        await sender.ack(1)  # batch 1's state records, not yet its fence: not complete
        assert written == [] and not f1.done()
        await sender.ack(1)  # batch 1's fence
        assert written == [1] and f1.done() and not f2.done()
        # Persisted with batch 1's fence: batch 1's value, although batch 2 already computed A2.
        assert c.store.backend._dbs[0].get(b"u:a") == b"A1"  # type: ignore[attr-defined]
        assert sender.calls[4] == ("records", [(CHANGELOG, 0, b"u:a", b"A2")])
        await sender.ack()
        await c.drain()
        assert written == [1, 2] and c.store.get(b"u:a") == b"A2" and not c.view.staged
        assert read_mark(c.store, 0) == {"in": 20}

    asyncio.run(scenario())


def test_a_failed_send_fails_its_flush_and_every_later_one() -> None:
    async def scenario() -> None:
        c, sender = committer(hold=True)
        written: list[int] = []
        c.view[b"u:a"] = b"A1"
        f1 = await c.submit(batch(b"a", b"A1", 10), lambda _: written.append(1))
        c.view[b"u:b"] = b"B1"
        f2 = await c.submit(batch(b"b", b"B1", 11), lambda _: written.append(2))
        await sender.ack(2)  # both batches' outputs
        await sender.ack(1, error=ConnectionError("broker gone"))  # batch 1's state records
        await sender.ack()
        for _ in range(5):
            await asyncio.sleep(0)
        assert f1.done() and f2.done() and isinstance(f1.exception(), ConnectionError)
        assert isinstance(f2.exception(), ConnectionError)  # it waited for batch 1's flush
        assert written == [] and 0 not in c.store.backend.reflected  # type: ignore[attr-defined]
        # Batch 2's state was never sent, and nothing more can be submitted.
        assert [kind for kind, _ in sender.calls] == ["messages", "messages", "records", "one"]
        with pytest.raises(RuntimeError, match="earlier flush failed"):
            await c.submit(batch(b"c", b"C1", 12))
        with pytest.raises(RuntimeError):
            await c.drain()

    asyncio.run(scenario())


def test_batches_whose_outputs_are_acknowledged_share_one_state_write() -> None:
    async def scenario() -> None:
        c, sender = committer(hold=True)
        written: list[int] = []
        c.view[b"u:a"] = b"A1"
        await c.submit(batch(b"a", b"A1", 10), lambda _: written.append(1))
        await sender.ack(1)  # batch 1's outputs: the writer sends its state and waits
        c.view[b"u:a"] = b"A2"
        await c.submit(batch(b"a", b"A2", 20), lambda _: written.append(2))
        c.view[b"u:a"] = b"A3"
        await c.submit(batch(b"a", b"A3", 30), lambda _: written.append(3))
        await sender.ack(1)  # batch 2's outputs
        await sender.ack(1)  # batch 3's outputs
        await sender.ack(2)  # batch 1's state and fence: batches 2 and 3 go as one write
        assert written == [1]
        assert sender.calls[-2:] == [
            ("records", [(CHANGELOG, 0, b"u:a", b"A3")]),
            ("one", (CHANGELOG, 0, watermark_key(0), b'{"in":30}')),
        ]
        await sender.ack()
        await c.drain()
        assert written == [1, 2, 3] and c.store.get(b"u:a") == b"A3" and not c.view.staged

    asyncio.run(scenario())

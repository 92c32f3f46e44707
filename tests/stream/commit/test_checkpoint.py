"""The committer writes outputs, then state, then one fence per partition, and erases by tombstone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson

from behavior_stream.stream.commit.checkpoint import Committer
from behavior_stream.stream.commit.watermarks import read_mark, watermark_key
from behavior_stream.stream.core.records import BatchResult, OutMessage
from tests.stream.commit.test_store import CHANGELOG, apply, make_store, record


class RecordingSender:
    """Records every send in order; `send_one` answers with increasing offsets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.offset = 100

    async def send_messages(self, messages: Iterable[OutMessage]) -> None:
        self.calls.append(("messages", [m.value for m in messages]))

    async def send(self, records: Iterable[tuple[str, int, bytes | None, bytes | None]]) -> None:
        self.calls.append(("records", list(records)))

    async def send_one(self, topic: str, partition: int, key: bytes, value: bytes | None) -> int:
        self.offset += 1
        self.calls.append(("one", (topic, partition, key, value)))
        return self.offset


def committer() -> tuple[Committer, RecordingSender]:
    sender = RecordingSender()
    return Committer(sender, make_store(), CHANGELOG), sender  # type: ignore[arg-type]


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

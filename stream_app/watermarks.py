"""Per-partition input watermarks, and the gap repair that keeps state exact if the input
resumes past the recovered state.

Every flush ends with a fence record per changelog partition whose value is that partition's
input watermark, `{topic: last input offset applied}`. The fence is written after the batch's
state records, so any prefix of the changelog that recovery reads holds user states covering
every input record up to the watermark it ends with (users written after it are ahead, and
skip their redelivered records by their own offsets). Faust resumes an input partition at its
committed offset, which is normally at or before the watermark, because offsets are
acknowledged only after the flush. Should it ever resume past the watermark (a committed
offset ahead of the state that recovery found), the records in between are read back with a
plain consumer and processed first, and the gap is logged and counted, so no event is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.records import InputRecord

log = logging.getLogger(__name__)

WATERMARK_PREFIX = b"w:watermark:"


class StateStore(Protocol):
    """What the watermark functions need of the table's store."""

    def get(self, key: bytes, /) -> bytes | None: ...


def watermark_key(partition: int) -> bytes:
    """Table key of a changelog partition's input watermark (a reserved, non-user key)."""
    return WATERMARK_PREFIX + str(partition).encode()


def read_mark(store: StateStore, partition: int) -> dict[str, int]:
    """The watermark stored for a partition: {input topic: last offset applied}; {} if none."""
    raw = store.get(watermark_key(partition))
    return {str(t): int(o) for t, o in orjson.loads(raw).items()} if raw else {}


def merged_mark(store: StateStore, partition: int, batch: Mapping[tuple[str, int], int]) -> dict[str, int]:
    """The partition's watermark after a batch: the stored one advanced by the batch's offsets."""
    mark = read_mark(store, partition)
    for (topic, part), offset in batch.items():
        if part == partition and offset > mark.get(topic, -1):
            mark[topic] = offset
    return mark


@dataclass(frozen=True, slots=True)
class Gap:
    """Input records [start, end) of a partition that neither the state nor the batch covers."""

    topic: str
    partition: int
    start: int
    end: int


def find_gaps(records: list[InputRecord], store: StateStore) -> list[Gap]:
    """Partitions whose first record in the batch lies beyond the stored watermark + 1."""
    first: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        if key not in first or rec.offset < first[key]:
            first[key] = rec.offset
    gaps = []
    marks: dict[int, dict[str, int]] = {}
    for (topic, partition), offset in sorted(first.items()):
        mark = marks.setdefault(partition, read_mark(store, partition))
        if topic in mark and offset > mark[topic] + 1:
            gaps.append(Gap(topic, partition, mark[topic] + 1, offset))
    return gaps


async def read_gap(gap: Gap, client_options: dict[str, Any], timeout_s: float = 30.0) -> list[InputRecord]:
    """Read a gap's records back from the broker (no group, no commits), in offset order."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options)
    await consumer.start()
    try:
        tp = TopicPartition(gap.topic, gap.partition)
        consumer.assign([tp])
        consumer.seek(tp, gap.start)
        out: list[InputRecord] = []
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < gap.end and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            now = time.time()
            for msg in batch.get(tp, []):
                if gap.start <= msg.offset < gap.end:
                    out.append(InputRecord(gap.topic, gap.partition, msg.offset, msg.key, msg.value, now))
        return out
    finally:
        await consumer.stop()


async def repair_gaps(
    records: list[InputRecord], store: StateStore, client_options: dict[str, Any]
) -> tuple[list[InputRecord], int]:
    """The batch with any gap's records put first, and how many records were read back."""
    gaps = find_gaps(records, store)
    if not gaps:
        return records, 0
    filled = await asyncio.gather(*(read_gap(g, client_options) for g in gaps))
    missing = [rec for part in filled for rec in part]
    for gap, part in zip(gaps, filled, strict=True):
        log.error(
            "input %s[%d] resumed at offset %d but the recovered state ends at %d: "
            "read back %d of the %d records in between",
            gap.topic,
            gap.partition,
            gap.end,
            gap.start - 1,
            len(part),
            gap.end - gap.start,
        )
    return missing + records, len(missing)

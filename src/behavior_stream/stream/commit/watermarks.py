"""Per-partition input watermarks, and the gap repair that keeps state exact if the input
resumes past the recovered state.

Every flush ends with a fence record per changelog partition whose value is that partition's
input watermark, `{topic: last input offset applied}`. The fence is written after the batch's
state records, so any prefix of the changelog that recovery reads holds user states covering
every input record up to the watermark it ends with (users written after it are ahead, and
skip their redelivered records by their own offsets). Faust resumes an input partition at its
committed offset, which is normally at or before the watermark, because offsets are
acknowledged only after the flush. Should it ever resume past the watermark (a committed
offset ahead of the state that recovery found), or a batch skip offsets (observed on Tansu
after a restart: the consumer delivered 799 then 804, and Faust counts such holes as acked),
the missing records are read back with a plain consumer and processed in offset order, and
the gap is logged and counted, so no event is lost. A hole that reads back empty is a real
one (compaction, transaction markers) and costs one fetch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from behavior_stream.stream.core.records import InputRecord

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
    """Offsets missing per input partition: between the stored watermark and the batch's
    first record, and between consecutive records of the batch."""
    offsets: dict[tuple[str, int], list[int]] = {}
    for rec in records:
        offsets.setdefault((rec.topic, rec.partition), []).append(rec.offset)
    gaps = []
    marks: dict[int, dict[str, int]] = {}
    for (topic, partition), offs in sorted(offsets.items()):
        mark = marks.setdefault(partition, read_mark(store, partition))
        offs.sort()
        expected = mark[topic] + 1 if topic in mark else offs[0]
        for offset in offs:
            if offset > expected:
                gaps.append(Gap(topic, partition, expected, offset))
            expected = max(expected, offset + 1)
    return gaps


class GapReader:
    """A plain consumer (no group, no commits) that reads offset ranges back, started on first use."""

    def __init__(self, client_options: dict[str, Any], timeout_s: float = 30.0) -> None:
        self._options = client_options
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, gap: Gap) -> list[InputRecord]:
        """The records of a gap, in offset order (fewer if the range has real holes)."""
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(enable_auto_commit=False, **self._options)
            await self._consumer.start()
        consumer = self._consumer
        tp = TopicPartition(gap.topic, gap.partition)
        consumer.assign([tp])
        consumer.seek(tp, gap.start)
        out: list[InputRecord] = []
        deadline = time.monotonic() + self._timeout_s
        while await consumer.position(tp) < gap.end and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            now = time.time()
            for msg in batch.get(tp, []):
                if gap.start <= msg.offset < gap.end:
                    out.append(InputRecord(gap.topic, gap.partition, msg.offset, msg.key, msg.value, now))
        return out

    async def stop(self) -> None:
        """Close the consumer if it was started."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def repair_gaps(
    records: list[InputRecord], store: StateStore, reader: GapReader
) -> tuple[list[InputRecord], int]:
    """The batch with any missing records read back and merged in offset order per partition,
    and how many records were read back."""
    gaps = find_gaps(records, store)
    if not gaps:
        return records, 0
    missing: list[InputRecord] = []
    for gap in gaps:
        found = await reader.read(gap)
        missing.extend(found)
        log.log(
            logging.ERROR if found else logging.INFO,
            "input %s[%d]: offsets %d-%d were not delivered (watermark or batch gap); read back %d records",
            gap.topic,
            gap.partition,
            gap.start,
            gap.end - 1,
            len(found),
        )
    if not missing:
        return records, 0
    # Users live in one partition, so ordering each partition by offset keeps each user's order.
    merged = sorted(missing + records, key=lambda r: (r.topic, r.partition, r.offset))
    return merged, len(missing)

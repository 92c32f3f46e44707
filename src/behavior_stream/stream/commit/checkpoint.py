"""The exactly-once protocol in one place, and the `Committer` that writes each batch's checkpoint.

Kafka (Tansu) delivers at least once and Faust commits input offsets on a timer, so a crash or
rebalance can replay any suffix of the input and any prefix of the changelog can be what the
next recovery reads. State stays exact because of these steps, in this order:

1. Admission (stream/core/process.py). Every user state records the last input offset it
   applied; the core skips a record at or below it, so a redelivered record is never applied
   twice, whatever point the crash hit.
2. Gap repair (watermarks.py), before the core runs. Each changelog partition carries an
   input watermark, `{input topic: last offset applied}`. A batch whose first offset is past
   the watermark (the input resumed past the recovered state after a restart) or that has a
   hole between two offsets is completed by reading the missing records back with a plain
   consumer, in offset order, and the gap is logged and counted.
3. The flush (`Committer.flush` below), each step awaited until acknowledged before the next:
   a. the batch's outputs (representations, recommendations, DLQ), so every applied event has
      its outputs before its state can be recovered;
   b. the changelog state records, one per touched user, with the batch API;
   c. one fence record per changelog partition the batch touched (state written there, or
      input read from the same-numbered input partition), alone in its batch, carrying that
      partition's input watermark. Because it follows the state
      records, any changelog prefix that ends with a fence holds states covering the input up
      to that watermark; users written after the last fence are ahead and skip by step 1. It
      also makes Tansu's end offset exact (it reports the base offset of the last record
      batch + 1), so the next recovery reads every state record.
4. Input offsets. Only after the flush returns does the agent (stream/runtime/agents.py) take
   the next batch, and only then does Faust's `take_events` ack the previous batch's events;
   Faust commits acked offsets every `commit_interval_s`. The committed offset therefore never
   passes state that is not in the changelog.
5. Recovery (store.py, rocksdb_store.py). Both stores never apply a changelog record at or
   below the offset they already reflect: Faust hands them records fetched past a lagging end
   offset at the next rebalance, and re-reads kept partitions from where the last recovery
   stopped; applied blindly, they would roll users back while the input moves on. The RocksDB
   store persists a partition's writes only at `mark_written` (after its fence or tombstone
   was acknowledged), in one batch with that offset, so local data never runs ahead of the
   changelog and a restart reads the changelog only past the persisted offset.

Erasure and eviction (`erase_outputs`, then `erase` / `erase_all`) follow the flush's order
too: first a tombstone for the user's key in each user-keyed output topic (representations,
recommendations; partitioned like the outputs), acknowledged; then the changelog tombstones and
a fence per partition, so a later recovery neither brings a user back nor loses the watermark.
The changelog tombstone is the commit point: a crash before it leaves the user in state, so a
retried DELETE (or the next eviction pass) sends every tombstone again; a crash after it comes
after the output tombstones. In the other order, a crash between the two would leave the
outputs of a user that state no longer knows, and nothing would ever tombstone them. Both run
under the runtime's lock, so no batch writes the user's outputs in between.

Reserved keys other than watermarks (the trending windows, stream/core/trending.py) are written
alone between batches (`write_aside`); they change no user state, so every changelog prefix
stays a valid recovery point, and being lone records they keep Tansu's end offset exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import orjson

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BatchSender, Record
from behavior_stream.stream.commit.store import TableStore
from behavior_stream.stream.commit.watermarks import merged_mark, read_mark, watermark_key
from behavior_stream.stream.core.records import BatchResult

log = logging.getLogger(__name__)


class Committer:
    """Writes a batch's outputs, state and fences to Kafka in the protocol's order (step 3),
    and the tombstones of erased or evicted users."""

    def __init__(self, sender: BatchSender, store: TableStore, changelog_topic: str) -> None:
        self.sender = sender
        self.store = store
        self.changelog_topic = changelog_topic

    async def start(self) -> None:
        """Connect the producer (idempotent)."""
        await self.sender.start()

    async def stop(self) -> None:
        """Close the producer."""
        await self.sender.stop()

    async def flush(self, result: BatchResult) -> None:
        """Outputs first (so every applied event has its outputs), then state, then fences."""
        await self.sender.send_messages(result.messages)
        records = []
        for partition, writes in result.state_writes.items():
            for key, value in writes.items():
                self.store.note_partition(key, partition)
                records.append((self.changelog_topic, partition, key, value))
        await self.sender.send(records)
        # A partition that only skipped redelivered records still advances its watermark.
        input_parts = {p for (topic, p) in result.watermarks}
        partitions = sorted(set(result.state_writes) | input_parts)
        fences = []
        for partition in partitions:
            fences.append(self.fence(partition, merged_mark(self.store, partition, result.watermarks)))
        await asyncio.gather(*fences)

    async def fence(self, partition: int, mark: dict[str, int]) -> None:
        """A lone record closing a flush of one changelog partition; it carries the input
        watermark (see watermarks.py), which memory holds too, as recovery would."""
        await self.write_aside(partition, watermark_key(partition), orjson.dumps(mark))

    async def write_aside(self, partition: int, key: bytes, value: bytes) -> None:
        """Write a reserved (non-user) key alone to the changelog, then to memory, between batches."""
        offset = await self.sender.send_one(self.changelog_topic, partition, key, value)
        self.store[key] = value
        self.store.note_partition(key, partition)
        self.store.mark_written(partition, offset)

    async def erase_outputs(self, topics: Iterable[str], keys: Iterable[bytes]) -> None:
        """Tombstones (null values) for keys in user-keyed output topics, partitioned as the
        outputs are; awaited before the changelog tombstones (see the protocol above)."""
        records: list[Record] = []
        keys = list(keys)  # read once per topic
        for topic in topics:
            n = await self.sender.partition_count(topic)
            records.extend((topic, partition_for(key, n), key, None) for key in keys)
        await self.sender.send(records)

    async def erase(self, key: bytes, partition: int) -> bool:
        """Remove a key from memory and write its tombstone; True if memory held it.

        The tombstone is a lone record, hence also a fence. The partition the key was written
        to wins over `partition` (the one computed from the key)."""
        existed = key in self.store
        known = self.store.partition_of(key)
        partition = partition if known is None else known
        if existed:
            del self.store[key]
        offset = await self.sender.send_one(self.changelog_topic, partition, key, None)
        self.store.mark_written(partition, offset)
        return existed

    async def erase_all(self, keys: Iterable[bytes]) -> None:
        """Remove keys held in memory and write their tombstones, then a fence per partition
        (keys of no known partition were never written, so they need none)."""
        records = []
        for key in keys:
            partition = self.store.partition_of(key)
            del self.store[key]
            if partition is not None:
                records.append((self.changelog_topic, partition, key, None))
        await self.sender.send(records)
        for partition in sorted({r[1] for r in records}):
            await self.fence(partition, read_mark(self.store, partition))

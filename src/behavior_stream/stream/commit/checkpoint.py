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
3. The flush (`Committer.submit` below), per batch, in this order:
   a. the batch's outputs (representations, recommendations, DLQ) are queued in the producer
      when the batch is submitted, and acknowledged before anything else of the batch is sent,
      so every applied event has its outputs before its state can be recovered;
   b. then, once the previous batch's flush is complete, the changelog state records (one per
      touched user, with the batch API) and
   c. one fence record per changelog partition the batch touched (state written there, or
      input read from the same-numbered input partition), alone in its batch, carrying that
      partition's input watermark, are queued together. The producer keeps one request in
      flight per partition and sends a partition's batches in the order queued, so a fence
      lands after its partition's state records: any changelog prefix that ends with a fence
      holds states covering the input up to that watermark; users written after the last fence
      are ahead and skip by step 1. The fence also makes Tansu's end offset exact (it reports
      the base offset of the last record batch + 1), so the next recovery reads every state
      record. Only when all of them are acknowledged is the flush complete (`mark_written`).
   Batches overlap: batch N+1 is computed and its outputs queued while batch N's writes are in
   flight (at most `depth` flushes at once), but b-c of N+1 wait for N's flush, so changelog
   writes stay in batch order per partition; batches whose outputs are all acknowledged by
   then share one b-c (each user's newest state, each partition's newest watermark). The
   core computes on `view`, an overlay (staged.py) whose values reach the table's store only
   as b sends them, so a store never holds a value of a batch whose state records were not
   sent.
   Crash points: before a is acknowledged, nothing of the batch is recoverable; its input is
   redelivered and processed again (its outputs may then appear twice: outputs are at least
   once, state is exact). Between a and the end of c, the outputs exist and the changelog may
   hold any per-partition prefix of b-c: a state record without its fence only puts that user
   ahead (it skips by step 1, and its events' outputs exist). A fence lands after its state
   records, unless their request failed for good: the flush has then failed, its offsets are
   never committed and the input is redelivered from before the batch, where step 1 applies
   what the changelog lacks. Later batches' b-c were not sent. A failed send fails every
   later flush and stops the worker.
4. Input offsets. Only a complete flush makes its batch's input offsets committable
   (stream/runtime/batch_delivery.py); Faust commits committable offsets every
   `commit_interval_s`, and before a rebalance or a stop, after waiting for the batches in
   flight. The committed offset therefore never passes state that is not in the changelog.
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

Erasure and eviction run after `drain` (no flush in flight, the overlay empty). Reserved keys
other than watermarks (the trending windows, stream/core/trending.py) are written alone, in the
flush order after the batches computed before them (`submit_aside`); they change no user state,
so every changelog prefix stays a valid recovery point, and being lone records they keep
Tansu's end offset exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BatchSender, Record
from behavior_stream.stream.commit.staged import StagedStore
from behavior_stream.stream.commit.store import TableStore
from behavior_stream.stream.commit.watermarks import merged_mark, read_mark, watermark_key
from behavior_stream.stream.core.records import BatchResult

log = logging.getLogger(__name__)

# Where a flush stands, for a test's fault hook (`Committer.checkpoint`): the batch's outputs
# are acknowledged and nothing else of it is sent; its state and fences are queued, none
# acknowledged; its state records are acknowledged, its fences not yet.
FlushPoint = Literal["outputs_acked", "state_queued", "state_acked"]


@dataclass(eq=False)
class _Flush:
    """A submitted batch (or reserved keys to write aside) on its way to the changelog."""

    result: BatchResult | None  # None for a write-aside
    marks: dict[int, bytes] = field(default_factory=dict)  # partition -> watermark after the batch
    outputs: asyncio.Future[Any] | None = None
    on_written: Callable[[float], None] | None = None
    aside: dict[int, tuple[bytes, bytes]] | None = None
    acked_at: float = 0.0  # when the outputs were acknowledged
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Committer:
    """Writes each batch's outputs, state and fences to Kafka in the protocol's order (step 3),
    overlapping batches, and the tombstones of erased or evicted users.

    One writer task takes the submitted batches in order. When it comes to a batch, it waits for
    that batch's outputs, then takes along every following batch whose outputs are acknowledged
    too, and writes their state in one send: each user's newest value and, per partition, the
    newest watermark in one fence. A writer that falls behind thus catches up with fewer, larger
    writes instead of holding the next batches up."""

    def __init__(
        self,
        sender: BatchSender,
        store: TableStore,
        changelog_topic: str,
        depth: int = 2,
        checkpoint: Callable[[FlushPoint], None] | None = None,
    ) -> None:
        self.sender = sender
        self.store = store
        self.view = StagedStore(store)  # what the core reads and writes (see staged.py)
        self.changelog_topic = changelog_topic
        self.depth = depth  # flushes in flight at most
        self.checkpoint = checkpoint
        self._queue: deque[_Flush] = deque()  # submitted, not yet taken by the writer
        self._unfinished: deque[_Flush] = deque()  # submitted, not yet complete
        self._wake = asyncio.Event()
        self._writer: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Connect the producer (idempotent)."""
        await self.sender.start()

    async def stop(self) -> None:
        """Wait for the flushes in flight, then close the producer."""
        try:
            await self.drain()
        finally:
            if self._writer is not None:
                self._writer.cancel()
                self._writer = None
            await self.sender.stop()

    async def flush(self, result: BatchResult) -> None:
        """Submit a batch and wait until its flush is complete."""
        await (await self.submit(result))

    async def submit(
        self, result: BatchResult, on_written: Callable[[float], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue a batch's outputs and return its flush, complete once its outputs, state and fences
        are acknowledged, when `on_written(outputs_acked_at)` runs. Waits while `depth` flushes
        are in flight (`room`, best awaited before the batch is taken); raises if an earlier
        flush failed."""
        await self.room()
        flush = _Flush(result, on_written=on_written)
        # The watermarks after this batch, staged now: the next batch's gap check reads them.
        for partition in sorted(set(result.state_writes) | {p for (_, p) in result.watermarks}):
            flush.marks[partition] = orjson.dumps(merged_mark(self.view, partition, result.watermarks))
            self.view[watermark_key(partition)] = flush.marks[partition]
        flush.outputs = outputs = await self.sender.issue_messages(result.messages)
        outputs.add_done_callback(lambda _: setattr(flush, "acked_at", time.time()))
        return self._enqueue(flush)

    def submit_aside(self, writes: dict[int, tuple[bytes, bytes]]) -> asyncio.Future[None]:
        """Write reserved keys, each alone, to their changelog partitions in the flush order: after
        every batch submitted before (so they never count events whose states are not there)."""
        self._raise_failure()
        return self._enqueue(_Flush(None, aside=writes))

    async def room(self) -> None:
        """Wait until fewer than `depth` flushes are in flight; raises if an earlier flush failed."""
        self._raise_failure()
        while len(self._unfinished) >= self.depth:
            await asyncio.wait([self._unfinished[0].done])
            self._raise_failure()

    async def drain(self) -> None:
        """Wait until every flush is complete (the overlay is then empty); raises a failed one's error."""
        while self._unfinished:
            await asyncio.wait([self._unfinished[-1].done])
            self._raise_failure()
        self._raise_failure()

    def _enqueue(self, flush: _Flush) -> asyncio.Future[None]:
        self._queue.append(flush)
        self._unfinished.append(flush)
        flush.done.add_done_callback(lambda _: self._unfinished.remove(flush))
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())
        return flush.done

    async def _write_loop(self) -> None:
        group: list[_Flush] = []
        try:
            while True:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                head = self._queue[0]
                if head.aside is not None:
                    group = [self._queue.popleft()]
                    await asyncio.gather(*(self.write_aside(p, k, v) for p, (k, v) in head.aside.items()))
                    head.done.set_result(None)
                    continue
                assert head.outputs is not None
                await head.outputs  # outputs first, in batch order
                group = [self._queue.popleft()]
                while self._queue and (nxt := self._queue[0]).outputs is not None and nxt.outputs.done():
                    nxt.outputs.result()  # raises if they failed
                    group.append(self._queue.popleft())
                if self.checkpoint is not None:
                    self.checkpoint("outputs_acked")
                await self._write_state(group)
                for flush in group:
                    if flush.on_written is not None:
                        flush.on_written(flush.acked_at)
                    flush.done.set_result(None)
        except BaseException as exc:
            # Every flush not complete fails with it: memory is ahead of what was written.
            self._failure = exc
            for flush in [*group, *self._queue]:
                if not flush.done.done():
                    flush.done.set_exception(exc)
                    flush.done.exception()  # retrieved here; callers see `_failure`
            self._queue.clear()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.error("a flush failed: %r", exc)  # the flushes' futures carry it on

    async def _write_state(self, group: list[_Flush]) -> None:
        """Steps 3b-c for batches whose outputs are acknowledged: their users' newest states, then a
        fence per partition with its newest watermark, queued together; `mark_written` once all
        are acknowledged."""
        writes: dict[int, dict[bytes, bytes]] = {}
        marks: dict[int, bytes] = {}
        for flush in group:
            assert flush.result is not None
            for partition, values in flush.result.state_writes.items():
                writes.setdefault(partition, {}).update(values)
            marks.update(flush.marks)  # a later batch's watermark includes the earlier ones
        records: list[Record] = []
        for partition, values in writes.items():
            self.view.settle(values, partition)
            records.extend((self.changelog_topic, partition, k, v) for k, v in values.items())
        state = await self.sender.issue(records)
        fences = []
        for partition, mark in marks.items():
            key = watermark_key(partition)
            self.view.settle({key: mark}, partition)
            fences.append(await self.sender.issue_one(self.changelog_topic, partition, key, mark))
        if self.checkpoint is not None:
            self.checkpoint("state_queued")
        await state
        if self.checkpoint is not None:
            self.checkpoint("state_acked")
        offsets = await asyncio.gather(*fences)
        for partition, offset in zip(marks, offsets, strict=True):
            self.store.mark_written(partition, offset)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError("an earlier flush failed; the worker must restart") from self._failure

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
        await self.drain()
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
        await self.drain()
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
        await self.drain()
        records = []
        for key in keys:
            partition = self.store.partition_of(key)
            del self.store[key]
            if partition is not None:
                records.append((self.changelog_topic, partition, key, None))
        await self.sender.send(records)
        for partition in sorted({r[1] for r in records}):
            await self.fence(partition, read_mark(self.store, partition))

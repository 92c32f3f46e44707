"""The worker's shared state: what the agents, timers and web views act on.

`Runtime.handle` is one micro-batch end to end: gap repair, the processing core, then the
`Committer`, which writes outputs, state and fences in the exactly-once order (see
stream/commit/checkpoint.py) while the next batch is computed. Batches come whole from the
consumer (batch_delivery.py). Deletions and evictions go through the same lock and the same
committer, after its writes in flight, so a tombstone never races a state write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from behavior_stream.stream.commit.checkpoint import Committer
from behavior_stream.stream.commit.store import TableStore
from behavior_stream.stream.commit.watermarks import GapReader, repair_gaps
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.state import USER_KEY_PREFIX, last_event_ts, user_key, user_of_key
from behavior_stream.stream.core.trending import trending_key
from behavior_stream.stream.runtime.batch_delivery import BatchFeed, InputBatch
from behavior_stream.stream.runtime.control import ControlPlane
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The worker: settings, the Faust app and everything the agents and views share."""

    settings: Settings
    app: faust.App
    table: Any  # faust.Table of bytes -> bytes
    store: TableStore
    ctx: StreamContext
    metrics: StreamMetrics
    committer: Committer
    gap_reader: GapReader
    control: ControlPlane  # commands every worker applies; every worker's A/B figures
    feed: BatchFeed  # the input topics' records, whole fetches at a time
    reload_mtimes: dict[str, float] = field(default_factory=dict)
    # Serializes batches, deletions and evictions, so a tombstone never races a state write.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started_at: float = field(default_factory=time.time)
    _crash: asyncio.Future[Any] | None = None  # the app's crash, once a batch failed
    # The users gauge without a scan per tick: counted at each recovery, eviction and
    # deletion, plus the users the core created since (StagedStore.created).
    _users_counted: int = 0
    _created_then: int = 0

    def count_users(self) -> int:
        """Count the users held (a scan of the store: after a recovery or an eviction only)."""
        self._users_counted = self.store.user_count()
        self._created_then = self.committer.view.created
        return self._users_counted

    def user_count(self) -> int:
        """Users held, without scanning the store."""
        return self._users_counted + self.committer.view.created - self._created_then

    @property
    def engine(self) -> ModelEngine:
        """The control model (variant A)."""
        return self.ctx.engine

    async def run_batches(self) -> None:
        """The batch loop: every batch the feed delivers, until it closes. A failure stops the
        worker (memory is then ahead of what was written; only a restart recovers)."""
        seconds = self.metrics.loop_seconds
        clock = time.perf_counter
        try:
            while True:
                t0 = clock()
                # Room first: a batch waits in the feed (growing) rather than computed and idle.
                await self.committer.room()
                t1 = clock()
                batch = await self.feed.take()
                if batch is None:
                    break
                t2 = clock()
                await self.handle(batch)
                seconds.labels("wait_flush").inc(t1 - t0)
                seconds.labels("wait_input").inc(t2 - t1)
        except Exception as exc:
            self.fail(exc)
            raise

    async def handle(self, batch: InputBatch) -> asyncio.Future[Any]:
        """Process one micro-batch: gap repair and the core, then submit its outputs, state and
        fences; returns the flush, which completes (and makes the batch's offsets committable)
        once all are acknowledged, while the next batch is already being computed."""

        def written(outputs_acked_at: float) -> None:
            self.feed.written(batch)
            if gap_records:
                self.metrics.gap_records.inc(gap_records)
            self.metrics.observe(result.stats, outputs_acked_at)

        async with self.lock:
            t0 = time.perf_counter()
            view = self.committer.view
            records, gap_records = await repair_gaps(batch.records, view, self.gap_reader)
            result = process_batch(records, self.ctx)
            t1 = time.perf_counter()
            flush = await self.committer.submit(result, written)
            t2 = time.perf_counter()
        self.metrics.loop_seconds.labels("compute").inc(t1 - t0)
        self.metrics.loop_seconds.labels("submit").inc(t2 - t1)
        flush.add_done_callback(self._flushed)
        return flush

    def _flushed(self, flush: asyncio.Future[Any]) -> None:
        if not flush.cancelled() and flush.exception() is not None:
            self.fail(flush.exception())  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        """Stop taking batches and crash the app (once)."""
        if self.feed.abandoned:
            return
        self.feed.abandon()
        log.error("batch processing failed, stopping the worker: %r", exc)
        self._crash = asyncio.ensure_future(self.app.crash(exc))

    async def promote(self, variant: str) -> None:
        """Serve one variant to every user, without a restart: "B" moves everyone to the
        treatment, "A" stops it. Users who keep their model keep their state; the others are
        adopted by the new model from their stored history window (see ModelEngine.adopt).
        Called for a `promote` command of the control topic, so every worker applies it."""
        if variant == "B" and self.ctx.treatment is None:
            raise ValueError("no treatment model (ab_checkpoint) is being served")
        async with self.lock:
            self.ctx.split = 1.0 if variant == "B" else 0.0
        log.info("experiment: variant %s promoted to every user", variant)

    @property
    def user_output_topics(self) -> tuple[str, str]:
        """The output topics keyed by user id, which erasure and eviction tombstone."""
        return (self.settings.representations_topic, self.settings.recommendations_topic)

    async def delete_user(self, user_id: str, partition: int) -> bool:
        """Erase a user: tombstones in the user-keyed output topics, then removal from memory
        and a tombstone in the changelog (so recovery does not bring the user back); True if
        the worker held the user. The output tombstones are sent even for a user unknown here,
        which costs two records and covers users erased or evicted before outputs were."""
        await self.committer.start()
        async with self.lock:
            self.ctx.feeds.pop(user_id, None)
            await self.committer.erase_outputs(self.user_output_topics, [user_id.encode("utf-8")])
            existed = await self.committer.erase(user_key(user_id), partition)
            self._users_counted -= int(existed)
            return existed

    async def evict_inactive(self, ttl_ms: int) -> int:
        """Evict users whose last event is more than `ttl_ms` behind the stream's event time."""
        await self.committer.start()
        async with self.lock:
            await self.committer.drain()  # the table's store then holds every computed state
            horizon = self.ctx.stream_time - ttl_ms
            doomed = [
                k
                for k in self.store
                if k.startswith(USER_KEY_PREFIX) and last_event_ts(self.store[k]) < horizon
            ]
            users = [u for u in map(user_of_key, doomed) if u is not None]
            for user in users:
                self.ctx.feeds.pop(user, None)
            # Evicted users leave the output topics too (two tombstones per user, one send).
            await self.committer.erase_outputs(self.user_output_topics, [u.encode("utf-8") for u in users])
            await self.committer.erase_all(doomed)
        if doomed:
            self.metrics.evicted.inc(len(doomed))
            self.metrics.users.set(self.count_users())
            log.info(
                "evicted %d users inactive for more than %.0f s of event time", len(doomed), ttl_ms / 1000
            )
        return len(doomed)

    async def persist_trending(self) -> int:
        """Write the trending window of each input partition that changed since the last call to
        its reserved table key; how many were written. Between batches (under the lock), so a
        window never counts events whose user states are not yet in the changelog."""
        await self.committer.start()
        async with self.lock:  # encoded between batches, written after them (submit_aside)
            dirty = self.ctx.trending.take_dirty()
            writes = {p: (trending_key(p), self.ctx.trending.encode(p)) for p in dirty}
            flush = self.committer.submit_aside(writes) if writes else None
        try:
            if flush is not None:
                await flush  # outside the lock: batches go on meanwhile
        except BaseException:
            self.ctx.trending.mark_dirty(dirty)  # written again by the next call
            raise
        if dirty:
            log.debug("trending windows of partitions %s persisted", dirty)
        return len(dirty)

    def restore_trending(self, assigned: set[int]) -> None:
        """After table recovery: load the persisted window of each newly assigned input partition
        and forget the windows of partitions this worker no longer owns. Kept partitions keep
        their window in memory, which is at least as new as the table's."""
        trending = self.ctx.trending
        for partition in sorted(trending.partitions() - assigned):
            trending.drop(partition)
        restored = []
        for partition in sorted(assigned - trending.partitions()):
            raw = self.store.get(trending_key(partition))
            if raw is not None and trending.restore(partition, raw):
                restored.append(partition)
        if restored:
            log.info("trending windows of partitions %s restored (%d items)", restored, len(trending))

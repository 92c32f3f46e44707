"""The worker's shared state: what the agents, timers and web views act on.

`Runtime.handle` is one micro-batch end to end: gap repair, the processing core, then the
`Committer`, which writes outputs, state and fences in the exactly-once order (see
stream/commit/checkpoint.py). Deletions and evictions go through the same lock and the same
committer, so a tombstone never races a state write.
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
from behavior_stream.stream.core.records import BatchResult, InputRecord
from behavior_stream.stream.core.state import USER_KEY_PREFIX, last_event_ts, user_key, user_of_key
from behavior_stream.stream.core.trending import trending_key
from behavior_stream.stream.runtime.control import ControlPlane
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)


def records_from_events(events: list[Any]) -> list[InputRecord]:
    """Faust events -> plain records for the core (raw bytes; no Faust codecs)."""
    now = time.time()
    out = []
    for ev in events:
        m = ev.message
        out.append(InputRecord(m.topic, m.partition, m.offset, m.key, m.value, now))
    return out


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
    reload_mtimes: dict[str, float] = field(default_factory=dict)
    # Serializes batches, deletions and evictions, so a tombstone never races a state write.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started_at: float = field(default_factory=time.time)

    @property
    def engine(self) -> ModelEngine:
        """The control model (variant A)."""
        return self.ctx.engine

    async def handle(self, events: list[Any]) -> BatchResult:
        """Process one micro-batch end to end: gap repair, core, then outputs, state and fences."""
        async with self.lock:
            records, gap_records = await repair_gaps(records_from_events(events), self.store, self.gap_reader)
            result = process_batch(records, self.ctx)
            await self.committer.flush(result)
        if gap_records:
            self.metrics.gap_records.inc(gap_records)
        self.metrics.observe(result.stats, time.time())
        return result

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
            return await self.committer.erase(user_key(user_id), partition)

    async def evict_inactive(self, ttl_ms: int) -> int:
        """Evict users whose last event is more than `ttl_ms` behind the stream's event time."""
        await self.committer.start()
        async with self.lock:
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
            self.metrics.users.set(self.store.user_count())
            log.info(
                "evicted %d users inactive for more than %.0f s of event time", len(doomed), ttl_ms / 1000
            )
        return len(doomed)

    async def persist_trending(self) -> int:
        """Write the trending window of each input partition that changed since the last call to
        its reserved table key; how many were written. Between batches (under the lock), so a
        window never counts events whose user states are not yet in the changelog."""
        await self.committer.start()
        async with self.lock:
            dirty = self.ctx.trending.take_dirty()
            try:
                for partition in dirty:
                    value = self.ctx.trending.encode(partition)
                    await self.committer.write_aside(partition, trending_key(partition), value)
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

"""The Faust app, in faust's usual order: app, topics, tables, then agents, timers and web views.

State lives in the `user-state` table (memory store, changelog-backed). The processing core
writes each touched user once per batch straight into the table's store and hands the encoded
values back; `Runtime.flush` sends them to the changelog with the batch API after the batch's
outputs, then a one-record fence per partition so the broker's end offset is exact for the next
recovery. Each user state records the last input offset applied, so a redelivered record is
never applied twice, however the crash fell; the store never lets recovery roll memory back
to an older changelog record (see table_store and README, "Exactly-once state").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from faust.types import TP

from behavior_stream.stream.commit.sender import BatchSender
from behavior_stream.stream.commit.store import STORE_SCHEME, TableStore
from behavior_stream.stream.commit.watermarks import (
    GapReader,
    merged_mark,
    read_mark,
    repair_gaps,
    watermark_key,
)
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import BatchResult, InputRecord
from behavior_stream.stream.core.state import USER_KEY_PREFIX, last_event_ts, user_key, user_of_key
from behavior_stream.stream.core.trending import TrendingWindow
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)

STATE_TABLE = "user-state"


@dataclass
class Runtime:
    """The worker: settings, the Faust app and everything the agents and views share."""

    settings: Settings
    app: faust.App
    table: Any  # faust.Table of bytes -> bytes
    store: TableStore
    ctx: StreamContext
    metrics: StreamMetrics
    sender: BatchSender
    changelog_topic: str
    gap_reader: GapReader
    reload_mtimes: dict[str, float] = field(default_factory=dict)
    # Serializes batches, deletions and evictions, so a tombstone never races a state write.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started_at: float = field(default_factory=time.time)

    @property
    def engine(self) -> ModelEngine:
        return self.ctx.engine

    def records_of(self, events: list[Any]) -> list[InputRecord]:
        """Faust events -> plain records for the core (raw bytes; no Faust codecs)."""
        now = time.time()
        out = []
        for ev in events:
            m = ev.message
            out.append(InputRecord(m.topic, m.partition, m.offset, m.key, m.value, now))
        return out

    async def handle(self, events: list[Any]) -> BatchResult:
        """Process one micro-batch end to end: core, outputs, state, fences, metrics."""
        async with self.lock:
            records, gap_records = await repair_gaps(self.records_of(events), self.store, self.gap_reader)
            result = process_batch(records, self.ctx)
            await self.flush(result)
        if gap_records:
            self.metrics.gap_records.inc(gap_records)
        self.metrics.observe(result.stats, time.time())
        return result

    async def flush(self, result: BatchResult) -> None:
        """Outputs first (so every applied event has its outputs), then state, then fences."""
        await self.sender.send_messages(result.messages)
        records = []
        for partition, writes in result.state_writes.items():
            for key, value in writes.items():
                self.store.note_partition(key, partition)
                records.append((self.changelog_topic, partition, key, value))
        await self.sender.send(records)
        input_parts = {p for (topic, p) in result.watermarks}
        partitions = sorted(set(result.state_writes) | input_parts)
        fences = []
        for partition in partitions:
            fences.append(self.fence(partition, merged_mark(self.store, partition, result.watermarks)))
        await asyncio.gather(*fences)

    async def fence(self, partition: int, mark: dict[str, int]) -> None:
        """A lone record closing a flush of one changelog partition; it carries the input
        watermark (see watermarks.py), which memory holds too, as recovery would."""
        key, value = watermark_key(partition), orjson.dumps(mark)
        offset = await self.sender.send_one(self.changelog_topic, partition, key, value)
        self.store[key] = value
        self.store.note_partition(key, partition)
        self.store.mark_written(partition, offset)

    async def promote(self, variant: str) -> None:
        """Serve one variant to every user, without a restart: "B" moves everyone to the
        treatment, "A" stops it. Users who keep their model keep their state; the others are
        adopted by the new model from their stored history window (see ModelEngine.adopt)."""
        if variant == "B" and self.ctx.treatment is None:
            raise ValueError("no treatment model (ab_checkpoint) is being served")
        async with self.lock:
            self.ctx.split = 1.0 if variant == "B" else 0.0
        log.warning("experiment: variant %s promoted to every user", variant)

    async def delete_user(self, user_id: str, partition: int) -> bool:
        """Erase a user: removal from memory and a tombstone in the changelog (so recovery
        does not bring the user back); the tombstone is a lone record, hence also a fence."""
        await self.sender.start()
        key = user_key(user_id)
        async with self.lock:
            existed = key in self.store
            # The partition the state was written to wins over the one computed from the key.
            known = self.store.partition_of(key)
            partition = partition if known is None else known
            if existed:
                del self.store[key]
            self.ctx.feeds.pop(user_id, None)
            offset = await self.sender.send_one(self.changelog_topic, partition, key, None)
            self.store.mark_written(partition, offset)
        return existed

    async def evict_inactive(self, ttl_ms: int) -> int:
        """Evict users whose last event is more than `ttl_ms` behind the stream's event time."""
        await self.sender.start()
        async with self.lock:
            horizon = self.ctx.stream_time - ttl_ms
            doomed = [
                k
                for k in self.store
                if k.startswith(USER_KEY_PREFIX) and last_event_ts(self.store[k]) < horizon
            ]
            records = []
            for key in doomed:
                partition = self.store.partition_of(key)
                del self.store[key]
                user = user_of_key(key)
                if user is not None:
                    self.ctx.feeds.pop(user, None)
                if partition is not None:
                    records.append((self.changelog_topic, partition, key, None))
            await self.sender.send(records)
            for partition in sorted({r[1] for r in records}):
                await self.fence(partition, read_mark(self.store, partition))
        if doomed:
            self.metrics.evicted.inc(len(doomed))
            self.metrics.users.set(self.store.user_count())
            log.warning(
                "evicted %d users inactive for more than %.0f s of event time", len(doomed), ttl_ms / 1000
            )
        return len(doomed)


def faust_credentials(settings: Settings) -> Any:
    """SASL/TLS settings for Faust, built from the same settings as the plain clients."""
    opts = client_options(settings)
    proto = settings.security_protocol
    if proto == "PLAINTEXT":
        return None
    if proto == "SSL":
        return opts["ssl_context"]
    return faust.SASLCredentials(
        username=opts["sasl_plain_username"],
        password=opts["sasl_plain_password"],
        mechanism=settings.sasl_mechanism,
        ssl_context=opts.get("ssl_context"),
    )


def faust_options(settings: Settings) -> dict[str, Any]:
    """Broker, consumer, commit and serializer options of every Faust app built from settings
    (the worker's, and the benchmark's Faust baselines, so they are compared like for like)."""
    return {
        "broker": settings.broker,
        "broker_credentials": faust_credentials(settings),
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.session_timeout_s / 3),
        "broker_commit_interval": settings.commit_interval_s,
        "consumer_auto_offset_reset": "earliest",
        "datadir": str(settings.data_dir),
        "autodiscover": False,
    }


def build_app(settings: Settings, engine: ModelEngine, treatment: ModelEngine | None = None) -> Runtime:
    """Create the Faust app with its topics, table, agents, timers and web views."""
    from behavior_stream.stream.runtime import agents, api

    app = faust.App(
        settings.app_id,
        **faust_options(settings),
        store=f"{STORE_SCHEME}://",
        table_standby_replicas=settings.standby_replicas,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_advertised_host or settings.web_host,
        web_port=settings.web_port,
    )
    table = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        default=None,
        help="Per-user stream state (behavior_stream.stream.core.state codec)",
    )
    store = TableStore(table)
    ctx = StreamContext(
        engine=engine,
        store=store,  # type: ignore[arg-type]
        input_topic=settings.input_topic,
        repartition_topic=settings.repartition_topic,
        representations_topic=settings.representations_topic,
        recommendations_topic=settings.recommendations_topic,
        dlq_topic=settings.dlq_topic,
        top_k=settings.top_k,
        exclude=settings.exclude,
        late_grace_ms=settings.late_grace_ms,
        recent_ids=settings.recent_ids,
        trending=TrendingWindow(settings.trending_window_s * 1000),
        treatment=treatment,
        rank_each_event=settings.online_eval_model,
        split=settings.ab_split if treatment is not None else 0.0,
    )
    if treatment is not None:
        engine.share_vocabularies(treatment)
    metrics = StreamMetrics(settings.online_window)
    metrics.set_models({v: e.version for v, e in ctx.engines().items()})
    rt = Runtime(
        settings=settings,
        app=app,
        table=table,
        store=store,
        ctx=ctx,
        metrics=metrics,
        sender=BatchSender(**client_options(settings)),
        changelog_topic=table.changelog_topic.get_topic_name(),
        gap_reader=GapReader(client_options(settings)),
    )
    agents.register(rt)
    api.register(rt)
    return rt


def assigned_partitions(app: faust.App, topic: str) -> list[TP]:
    """The partitions of `topic` this worker currently owns."""
    return sorted(tp for tp in app.consumer.assignment() if tp.topic == topic)

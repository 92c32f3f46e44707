"""The Faust app, in faust's usual order: app, topics, tables, then agents, timers and web views.

State lives in the `user-state` table (memory or RocksDB store, changelog-backed). The input
topics reach the processing core as whole fetches (batch_delivery.py: Faust's consumer with one
hook, everything else Faust as usual). The core writes each touched user once per batch into
the Committer's view of the table's store; the `Runtime` (runtime.py) hands the batch to the
`Committer`, which sends outputs, then state and a fence per partition, overlapping the next
batch. Why that order makes state exactly-once, and where each guarantee lives, is explained
at the top of stream/commit/checkpoint.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from typing import Any

import faust
from faust.types import TP

from behavior_stream.stream.commit.checkpoint import Committer, FlushPoint
from behavior_stream.stream.commit.sender import BatchSender
from behavior_stream.stream.commit.store import TableStore, store_url
from behavior_stream.stream.commit.watermarks import GapReader
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.fresh_items import FreshItems
from behavior_stream.stream.core.process import StreamContext
from behavior_stream.stream.core.scenarios import ScenarioOptions
from behavior_stream.stream.core.trending import TrendingWindow
from behavior_stream.stream.runtime import agents, api, scenario_views
from behavior_stream.stream.runtime.batch_delivery import BatchFeed, install
from behavior_stream.stream.runtime.control import ControlPlane
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.runtime import Runtime
from behavior_stream.stream.runtime.settings import Settings

STATE_TABLE = "user-state"
CRASH_EXIT_CODE = 70  # the test fault's exit status (`crash_at`)

log = logging.getLogger(__name__)


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
        # Faust's check refuses a persisted changelog offset above the partition's reported end
        # offset. The stores persist an offset only after its changelog write was acknowledged
        # (stream/commit), so a higher one means the broker's report lags, as Tansu's does after a
        # burst (a SIGKILL restart crashed on 986 > 985), not that the changelog lost data.
        "recovery_consistency_check": False,
    }


def stream_context(
    settings: Settings,
    engine: ModelEngine,
    store: MutableMapping[bytes, bytes],
    treatment: ModelEngine | None = None,
) -> StreamContext:
    """The processing core's context as the settings configure it: the worker's, and the
    benchmark's core-alone runs (so both do the same work per event: scenario records, fresh
    slots, feed policy)."""
    return StreamContext(
        engine=engine,
        store=store,
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
        fresh_slots=settings.fresh_slots,
        fresh=FreshItems(half_life_ms=settings.fresh_half_life_s * 1000),
        split=settings.ab_split if treatment is not None else 0.0,
        scenarios=ScenarioOptions(
            search="search" in settings.scenario_records,
            cart="cart" in settings.scenario_records,
            explain=settings.explain_records,
            cart_blend=settings.cart_blend,
        ),
    )


def build_app(settings: Settings, engine: ModelEngine, treatment: ModelEngine | None = None) -> Runtime:
    """Create the Faust app with its topics, table, agents, timers and web views."""
    app = faust.App(
        settings.app_id,
        **faust_options(settings),
        store=store_url(settings.store),
        table_standby_replicas=settings.standby_replicas,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_advertised_host or settings.web_host,
        web_port=settings.web_port,
    )
    feed = BatchFeed(
        frozenset({settings.input_topic, settings.repartition_topic}),
        settings.max_batch,
        settings.fetch_buffer,
        settings.fetch_wait_ms,
    )
    install(app, feed)  # before the first topic: that one creates the transport
    table = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        default=None,
        help="Per-user stream state (behavior_stream.stream.core.state codec)",
    )
    store = TableStore(table)
    committer = Committer(
        BatchSender(**client_options(settings)),
        store,
        table.changelog_topic.get_topic_name(),
        depth=settings.flush_depth,
        checkpoint=crash_hook(settings.crash_at, settings.crash_after_batches),
    )
    ctx = stream_context(settings, engine, committer.view, treatment)
    if treatment is not None:
        engine.share_vocabularies(treatment)
    metrics = StreamMetrics(settings.online_window)
    metrics.set_models({v: e.version for v, e in ctx.engines().items()})
    metrics.track_recovery(store.recovery_counts)
    rt = Runtime(
        settings=settings,
        app=app,
        table=table,
        store=store,
        ctx=ctx,
        metrics=metrics,
        committer=committer,
        gap_reader=GapReader(client_options(settings)),
        control=ControlPlane(settings),
        feed=feed,
    )
    agents.register(rt)
    api.register(rt)
    scenario_views.register(rt)
    return rt


def crash_hook(point: FlushPoint | None, after: int) -> Callable[[FlushPoint], None] | None:
    """The `crash_at` test fault: exit without any cleanup, as a SIGKILL would, the (after+1)-th
    time a flush reaches `point`; None (no hook) unless configured."""
    if point is None:
        return None
    seen = 0

    def hook(reached: FlushPoint) -> None:
        nonlocal seen
        if reached != point:
            return
        seen += 1
        if seen > after:
            log.error("test fault: exiting at %s of flush %d", point, seen)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)

    return hook


def assigned_partitions(app: faust.App, topic: str) -> list[TP]:
    """The partitions of `topic` this worker currently owns."""
    return sorted(tp for tp in app.consumer.assignment() if tp.topic == topic)

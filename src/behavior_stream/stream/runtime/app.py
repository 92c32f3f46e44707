"""The Faust app, in faust's usual order: app, topics, tables, then agents, timers and web views.

State lives in the `user-state` table (memory or RocksDB store, changelog-backed). The processing core
writes each touched user once per batch straight into the table's store; the `Runtime`
(runtime.py) hands the batch to the `Committer`, which sends outputs, then state, then a fence
per partition. Why that order makes state exactly-once, and where each guarantee lives, is
explained at the top of stream/commit/checkpoint.py.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP

from behavior_stream.stream.commit.checkpoint import Committer
from behavior_stream.stream.commit.sender import BatchSender
from behavior_stream.stream.commit.store import TableStore, store_url
from behavior_stream.stream.commit.watermarks import GapReader
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.fresh_items import FreshItems
from behavior_stream.stream.core.process import StreamContext
from behavior_stream.stream.core.trending import TrendingWindow
from behavior_stream.stream.runtime import agents, api
from behavior_stream.stream.runtime.control import ControlPlane
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.prometheus import StreamMetrics
from behavior_stream.stream.runtime.runtime import Runtime
from behavior_stream.stream.runtime.settings import Settings

STATE_TABLE = "user-state"


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
        fresh_slots=settings.fresh_slots,
        fresh=FreshItems(half_life_ms=settings.fresh_half_life_s * 1000),
        split=settings.ab_split if treatment is not None else 0.0,
    )
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
        committer=Committer(
            BatchSender(**client_options(settings)), store, table.changelog_topic.get_topic_name()
        ),
        gap_reader=GapReader(client_options(settings)),
        control=ControlPlane(settings),
    )
    agents.register(rt)
    api.register(rt)
    return rt


def assigned_partitions(app: faust.App, topic: str) -> list[TP]:
    """The partitions of `topic` this worker currently owns."""
    return sorted(tp for tp in app.consumer.assignment() if tp.topic == topic)

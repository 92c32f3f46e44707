"""Plain aiokafka plumbing shared by the worker, replay and tests: client options and topics.

Keys map to partitions in `behavior_stream.stream.commit.partitioning`.
"""

from __future__ import annotations

import logging
import ssl
from contextlib import suppress
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)

# Tansu reports only the topic settings given at creation, and some clients (Quix Streams)
# need retention.ms, so every topic is created with it.
DEFAULT_TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000)}


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments: bootstrap servers plus SASL/TLS from the settings."""
    opts: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    proto = settings.security_protocol
    if proto != "PLAINTEXT":
        opts["security_protocol"] = proto
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
        if settings.ssl_certfile:
            ctx.load_cert_chain(
                str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None
            )
        opts["ssl_context"] = ctx
    if proto.startswith("SASL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return opts


def stream_topics(settings: Settings) -> list[str]:
    """Topics the worker reads or writes (Faust creates its own changelog topics)."""
    return [
        settings.input_topic,
        settings.repartition_topic,
        settings.representations_topic,
        settings.recommendations_topic,
        settings.dlq_topic,
        settings.control_topic,
        settings.stats_topic,
    ]


def topic_layout(settings: Settings, name: str, partitions: int) -> tuple[int, dict[str, str]]:
    """Partitions and configs a topic is created with.

    The control and stats topics hold decisions and latest figures, keyed by what they decide
    (control) or by worker (stats): compacted, one partition, and every worker reads all of
    them with its own group-less consumer (stream/runtime/control.py), not through the group.
    """
    if name in (settings.control_topic, settings.stats_topic):
        return 1, {**DEFAULT_TOPIC_CONFIG, "cleanup.policy": "compact"}
    return partitions, DEFAULT_TOPIC_CONFIG


async def ensure_topics(
    settings: Settings, names: list[str] | None = None, partitions: int | None = None
) -> None:
    """Create topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in (names or stream_topics(settings)) if n not in existing]
        n_parts = partitions or settings.partitions
        for name in wanted:
            parts, configs = topic_layout(settings, name, n_parts)
            with suppress(TopicAlreadyExistsError):  # another worker created it first
                topic = NewTopic(name, parts, settings.replication_factor, topic_configs=configs)
                await admin.create_topics([topic])
        if wanted:
            log.info("created topics %s", wanted)
    finally:
        await admin.close()

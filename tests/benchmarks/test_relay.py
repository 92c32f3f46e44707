"""The no-work relay against the real broker: every event sent through it is matched by the
end-to-end probe, and its outputs count each user's events as the worker's do."""

from __future__ import annotations

import asyncio
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from benchmarks.e2e import measure_load
from benchmarks.relay import relay

START_MS = 1_767_571_200_000


async def _outputs(settings: Settings, expected: int) -> list[dict[str, object]]:
    """Every representation-shaped record of the topic (until `expected` were read, or 10 s)."""
    consumer = AIOKafkaConsumer(
        auto_offset_reset="earliest", enable_auto_commit=False, **client_options(settings)
    )
    await consumer.start()
    try:
        topic = settings.representations_topic
        consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        out: list[dict[str, object]] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(out) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(orjson.loads(r.value) for r in records if r.value is not None)
        return out
    finally:
        await consumer.stop()


def test_relay_answers_every_event_with_its_users_count(broker: EmbeddedBroker) -> None:
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        broker=broker.url,
        partitions=2,
        input_topic=f"relay-in-{run}",
        representations_topic=f"relay-reps-{run}",
    )
    # Three users, interleaved, 40 events each.
    events = [
        make_event(f"u{u}", EventType.CLICK, START_MS + 1000 * i, f"i{i % 7}", None, f"u{u}-s0")
        for i in range(40)
        for u in range(3)
    ]

    async def scenario() -> tuple[int, int, list[dict[str, object]]]:
        await ensure_topics(settings, [settings.input_topic, settings.representations_topic])
        stop = asyncio.Event()
        task = asyncio.ensure_future(relay(settings, stop))
        latencies = await measure_load(settings, settings.input_topic, events, rate=400.0)
        stop.set()
        relayed = await task
        return latencies.unmatched, relayed, await _outputs(settings, 3)

    unmatched, relayed, outputs = asyncio.run(scenario())
    assert relayed == len(events)
    assert unmatched == 0
    final: dict[str, int] = {}
    for out in outputs:
        user, seen = str(out["user_id"]), int(str(out["events_seen"]))
        final[user] = max(final.get(user, 0), seen)
    assert final == {"u0": 40, "u1": 40, "u2": 40}

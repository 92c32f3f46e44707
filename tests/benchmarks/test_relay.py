"""The no-work relay against the real broker: every event sent through it is matched by the
end-to-end probe, and its outputs count each user's events as the worker's do."""

from __future__ import annotations

import asyncio
import uuid

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from benchmarks.e2e import measure_load
from benchmarks.relay import relay
from tests.streamkit import latest_representations

START_MS = 1_767_571_200_000


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

    async def scenario() -> tuple[int, int]:
        await ensure_topics(settings, [settings.input_topic, settings.representations_topic])
        stop = asyncio.Event()
        task = asyncio.ensure_future(relay(settings, stop))
        latencies = await measure_load(settings, settings.input_topic, events, rate=400.0)
        stop.set()
        return latencies.unmatched, await task

    unmatched, relayed = asyncio.run(scenario())
    assert relayed == len(events)
    assert unmatched == 0
    final = {user: rep["events_seen"] for user, rep in latest_representations(settings).items()}
    assert final == {"u0": 40, "u1": 40, "u2": 40}

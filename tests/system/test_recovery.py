"""Crash recovery on the real broker: SIGKILL the worker three times mid-replay; states stay exact.

The mechanism (README, "Exactly-once state" and "The overlapped flush"): a batch's outputs are
acknowledged before its state records and a one-record fence per changelog partition (carrying
the input watermark) are sent, and its input offsets become committable only once all are
acknowledged, while the next batch is computed; every user state carries the last input
offset applied, so a redelivered record is skipped; the store never applies a changelog
record older than what it reflects. (A crash at chosen points of one flush:
test_partial_flush.py.) Run on both stores: memory (each restart re-reads the whole changelog) and RocksDB
(each restart reads it from the offset persisted with the local data, after a SIGKILL too).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import replay_events
from tests.streamkit import (
    WorkerProcess,
    latest_representations,
    read_topic,
    stream_settings,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_sigkill_three_times_keeps_states_exact(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path, store: str
) -> None:
    events = taobao_events[:60_000]
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, max_batch=500, store=store
    )
    asyncio.run(ensure_topics(settings))
    asyncio.run(replay_events(settings, events))
    rng = random.Random(7)
    log = tmp_path / "worker.log"
    for kill in range(3):
        worker = WorkerProcess(settings, log).start()
        worker.wait_ready()
        wait_until(lambda: worker.metrics().get("behavior_stream_users", 0) > 0, 60, "no progress")  # noqa: B023
        delay = rng.uniform(1.0, 4.0)
        asyncio.run(asyncio.sleep(delay))
        users = worker.metrics().get("behavior_stream_users", 0)
        worker.kill()
        print(f"kill {kill + 1}: SIGKILL after {delay:.1f}s with {users:.0f} users in state")
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        per_user = Counter(e.user_id for e in events)

        def final() -> dict[str, dict]:
            return latest_representations(settings)

        # Done when every user's latest output has seen at least all of their events (the
        # recovered state alone, visible in the users gauge, says nothing about the backlog).
        def caught_up() -> bool:
            last = final()
            return len(last) == len(per_user) and all(
                r["events_seen"] >= per_user[u] for u, r in last.items()
            )

        wait_until(caught_up, 600, "the worker did not catch up", interval=3.0)
        last = final()
        covered: dict[str, set[str]] = {}
        for rec in read_topic(settings, settings.recommendations_topic):
            msg = orjson.loads(rec.value)
            covered.setdefault(msg["user_id"], set()).add(msg["event_id"])
        engine = ModelEngine.from_checkpoint(taobao_checkpoint)
        expected = representations(replay_states(events, engine), engine)
        assert set(last) == set(expected)
        assert all(last[u]["events_seen"] == per_user[u] for u in expected), (
            "an event was lost or applied twice"
        )
        worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
        assert worst <= 1e-4, worst
        final_event = {e.user_id: e.event_id for e in events}
        assert all(final_event[u] in covered[u] for u in expected), "a user's last event has no output"
    finally:
        worker.stop()

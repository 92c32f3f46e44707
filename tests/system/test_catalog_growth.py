"""The catalog grows: an item newer than the served model is fresh, then `retrain` makes it the model's.

A worker serves a checkpoint whose vocabulary lacks item X while events with X are replayed:
X reaches feeds only as a fresh item (the co-visitation rule, `"fresh": true`, last places).
Then `behavior-stream retrain --from-topic` (a real subprocess) trains on the topic's retained
events and publishes a checkpoint at the watched path; the worker hot-reloads it without a
restart, and a user who keeps clicking X gets X from the new model, not marked fresh.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from behavior_stream.nn.checkpoint import load_checkpoint
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import Producer
from behavior_stream.testing.workerproc import settings_env
from tests.streamkit import WorkerProcess, make_checkpoint, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

KNOWN = [f"k{n}" for n in range(40)]
X = "new-x"
T0 = 1_700_000_000_000
FRESH_SLOTS = 2


def traffic(n_users: int, seed: int = 0) -> list[Event]:
    """Sessions over the known items; most users view k1 and then X, often several times."""
    rng = random.Random(seed)
    events: list[Event] = []
    for u in range(n_users):
        ts = T0 + u * 1000
        for _ in range(rng.randint(10, 20)):
            events.append(make_event(f"u{u}", EventType.CLICK, ts, rng.choice(KNOWN)))
            ts += 10_000
        if u % 4:
            events.append(make_event(f"u{u}", EventType.CLICK, ts, "k1"))
            for _ in range(rng.randint(1, 4)):
                ts += 10_000
                events.append(make_event(f"u{u}", EventType.CLICK, ts, X))
    return sorted(events, key=lambda e: e.ts)


def produce(settings: Settings, events: list[Event]) -> None:
    async def run() -> None:
        async with Producer(settings) as producer:
            await producer.send_keyed(
                settings.input_topic, [(e.user_id.encode(), e.to_json()) for e in events]
            )

    asyncio.run(run())


def applied(worker: WorkerProcess) -> float:
    return sum(v for k, v in worker.metrics().items() if k.startswith("behavior_stream_events_total"))


def feeds(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(settings, settings.recommendations_topic, idle_s=1.5)]


def last_feed(settings: Settings, user: str, version: str) -> dict[str, Any] | None:
    mine = [f for f in feeds(settings) if f["user_id"] == user and f["model_version"] == version]
    return max(mine, key=lambda f: f["ts"]) if mine else None


def test_new_item_is_fresh_until_retrain_then_the_model_recommends_it(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(tmp_path / "model.pt", KNOWN, seed=5)
    old_version = load_checkpoint(checkpoint).model_version
    settings = stream_settings(
        broker, tmp_path, checkpoint, reload_poll_s=0.5, ann_threshold=0, top_k=10, fresh_slots=FRESH_SLOTS
    )
    asyncio.run(ensure_topics(settings))
    events = traffic(200)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        produce(settings, events)
        wait_until(lambda: applied(worker) >= len(events), 120, "worker did not apply the replay")
        # A user who only views k1: X, co-visited with k1 by others, is their fresh item.
        probe_ts = events[-1].ts + 60_000
        produce(settings, [make_event("probe-a", EventType.CLICK, probe_ts, "k1")])
        wait_until(lambda: last_feed(settings, "probe-a", old_version) is not None, 60, "no feed for probe-a")

        # (a) before retrain: X appears in feeds, and only as a fresh item in the last places.
        before = feeds(settings)
        assert {f["model_version"] for f in before} == {old_version}
        with_x = [f for f in before if X in [e["item_id"] for e in f["items"]]]
        assert with_x, "X never reached a feed as a fresh item"
        for f in before:
            flags = [e.get("fresh", False) for e in f["items"]]
            assert len(f["items"]) == settings.top_k
            assert flags == sorted(flags) and sum(flags) <= FRESH_SLOTS  # fresh ones last, bounded
            assert all(e.get("fresh") is True for e in f["items"] if e["item_id"] == X)
            assert all(e["item_id"] in KNOWN for e in f["items"] if not e.get("fresh"))
        probe = last_feed(settings, "probe-a", old_version)
        # X is the only unknown item, so one place is taken and the model keeps the other nine.
        assert probe is not None and [e.get("fresh", False) for e in probe["items"]] == [False] * 9 + [True]
        assert probe["items"][-1]["item_id"] == X and probe["items"][-1]["score"] > 1  # co-visit count

        # (b) retrain on the topic's retained events publishes at the watched path.
        env = {**os.environ, **settings_env(settings)}
        cmd = [sys.executable, "-m", "behavior_stream.cli.main", "retrain", "--from-topic", "--epochs", "2",
               "--min-events", "100", "--threads", "1"]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        retrained = load_checkpoint(checkpoint)
        new_version = retrained.model_version
        assert new_version != old_version and f"published {new_version}" in done.stdout
        assert X in retrained.vocab.items and set(KNOWN) <= set(retrained.vocab.items)
        assert retrained.metadata["dataset"]["events"] == len(events) + 1

        # The worker reloads it without a restart; a user clicking X gets X from the model.
        pid = worker.proc.pid if worker.proc is not None else None
        wait_until(
            lambda: (
                worker.metrics().get(f'behavior_stream_model_info{{variant="A",version="{new_version}"}}')
                == 1.0
            ),
            60,
            "model was not hot-reloaded",
        )
        ts = probe_ts + 60_000
        produce(settings, [make_event("probe-b", EventType.CLICK, ts + i * 5_000, X) for i in range(5)])
        wait_until(lambda: last_feed(settings, "probe-b", new_version) is not None, 60, "no feed for probe-b")
        feed = last_feed(settings, "probe-b", new_version)
        assert feed is not None and feed["ts"] == ts + 20_000  # the feed answering the 5th click
        entry = next((e for e in feed["items"] if e["item_id"] == X), None)
        assert entry is not None, feed["items"]
        assert "fresh" not in entry and feed["items"].index(entry) < 3  # the repeat bonus ranks it high
        assert worker.alive() and worker.proc is not None and worker.proc.pid == pid  # no restart
    finally:
        worker.stop()

"""State lifecycle on the real broker: TTL eviction and DELETE leave tombstones (state and
outputs) and survive restarts; reads need the read token when one is set; the trending window
is rebuilt after a crash."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.state import user_key
from behavior_stream.stream.core.trending import TRENDING_PREFIX, decode_window
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import replay_events
from tests.streamkit import WorkerProcess, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

HOUR = 3_600_000
TOKEN = "s3cret-token"
READ_TOKEN = "reader-token"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def user_events(user: str, start: int, items: list[str], n: int = 5) -> list[Event]:
    return [make_event(user, EventType.CLICK, start + i * 60_000, items[i % len(items)]) for i in range(n)]


def last_record_per_user(settings: Settings, topic: str) -> dict[str, Any]:
    """Each user's last record in an output topic (a user's records share one partition)."""
    last: dict[str, Any] = {}
    for rec in sorted(read_topic(settings, topic), key=lambda r: (r.partition, r.offset)):
        last[rec.key.decode()] = rec
    return last


def test_ttl_eviction_and_delete_survive_restart(
    broker: EmbeddedBroker, tmp_path: Path, taobao_checkpoint: Path
) -> None:
    items = list(ModelEngine.from_checkpoint(taobao_checkpoint).vocab.items[:20])
    t0 = 1_700_000_000_000
    old = [e for u in ("old-1", "old-2") for e in user_events(u, t0, items)]
    recent = [e for u in ("new-1", "new-2", "new-3") for e in user_events(u, t0 + 10 * HOUR, items)]
    settings = stream_settings(
        broker,
        tmp_path,
        taobao_checkpoint,
        ann_threshold=0,
        state_ttl_s=2 * 3600,
        api_token=TOKEN,
        api_read_token=READ_TOKEN,
    )
    asyncio.run(ensure_topics(settings))
    asyncio.run(replay_events(settings, sorted(old + recent, key=lambda e: e.ts)))
    log = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        # Users two hours of event time behind the newest event are evicted by the TTL timer.
        wait_until(
            lambda: worker.metrics().get("behavior_stream_evicted_users_total") == 2, 90, "no eviction"
        )
        assert worker.get("/users/old-1/representation", headers=READ)[0] == 404
        assert worker.get("/users/new-1/representation", headers=READ)[0] == 200

        # With a read token, reads need it (or the write token); probes and Prometheus do not.
        for path in (
            "/users/new-1/representation",
            "/users/new-1/recommendations",
            "/trending",
            "/experiments",
        ):
            assert worker.get(path)[0] == 401, path
            assert worker.get(path, headers={"Authorization": "Bearer wrong"})[0] == 401, path
        status, body = worker.get("/users/new-1/recommendations", headers=READ)
        assert status == 200 and orjson.loads(body)["user_id"] == "new-1"
        assert worker.get("/trending", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert worker.get("/health")[0] == 200 and worker.get("/metrics")[0] == 200
        assert worker.get("/users/new-1", method="DELETE", headers=READ)[0] == 401  # reads only

        # DELETE needs the bearer token when one is configured, and is audited in the log.
        assert worker.get("/users/new-1", method="DELETE")[0] == 401
        bad = {"Authorization": "Bearer wrong"}
        assert worker.get("/users/new-1", method="DELETE", headers=bad)[0] == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert worker.get("/users/new-1", method="DELETE", headers=good)[0] == 200
        assert worker.get("/users/new-1/recommendations", headers=READ)[0] == 404
        assert worker.get("/users/new-1", method="DELETE", headers=good)[0] == 404
    finally:
        worker.stop()
    assert "DELETE /users/new-1: erased=True" in log.read_text()

    # Tombstones are in the changelog, so a restarted worker does not resurrect anyone.
    changelog = read_topic(settings, f"{settings.app_id}-user-state-changelog")
    tombstones = {r.key for r in changelog if r.value is None}
    assert {user_key("old-1"), user_key("old-2"), user_key("new-1")} <= tombstones

    # Erased and evicted users end with a tombstone in each user-keyed output topic, in the
    # partition their outputs went to; kept users still end with their last output.
    for topic in (settings.representations_topic, settings.recommendations_topic):
        last = last_record_per_user(settings, topic)
        assert set(last) == {"old-1", "old-2", "new-1", "new-2", "new-3"}, topic
        for gone in ("old-1", "old-2", "new-1"):
            assert last[gone].value is None, (topic, gone)
            assert last[gone].partition == partition_for(gone.encode(), settings.partitions)
        for kept in ("new-2", "new-3"):
            assert orjson.loads(last[kept].value)["user_id"] == kept
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metrics().get("behavior_stream_users") == 2, 60, "recovery incomplete")
        for gone in ("old-1", "old-2", "new-1"):
            assert worker.get(f"/users/{gone}/representation", headers=READ)[0] == 404
        for kept in ("new-2", "new-3"):
            assert worker.get(f"/users/{kept}/representation", headers=READ)[0] == 200
    finally:
        worker.stop()


def persisted_trending(settings: Settings, bucket_ms: int) -> Counter[str]:
    """The item counts of the last trending window persisted per partition in the changelog."""
    last: dict[bytes, bytes] = {}
    for rec in read_topic(settings, f"{settings.app_id}-user-state-changelog", idle_s=1.0):
        if rec.key.startswith(TRENDING_PREFIX) and rec.value is not None:
            last[rec.key] = rec.value
    total: Counter[str] = Counter()
    for value in last.values():
        for counts in decode_window(value, bucket_ms).values():
            total.update(counts)
    return total


def test_trending_is_rebuilt_after_a_crash(
    broker: EmbeddedBroker, tmp_path: Path, taobao_checkpoint: Path
) -> None:
    items = list(ModelEngine.from_checkpoint(taobao_checkpoint).vocab.items[:10])
    t0 = 1_700_000_000_000
    # 24 users over 4 partitions, 10 items (fewer than top_k, so /trending shows every count).
    events = [
        make_event(f"t{u}", EventType.CLICK, t0 + (u * 7 + i) * 1000, items[(u * i + u) % len(items)])
        for u in range(24)
        for i in range(8)
    ]
    expected = Counter(e.item_id for e in events)
    settings = stream_settings(broker, tmp_path, taobao_checkpoint, ann_threshold=0, trending_persist_s=1.0)
    asyncio.run(ensure_topics(settings))
    asyncio.run(replay_events(settings, sorted(events, key=lambda e: e.ts)))

    def trending(w: WorkerProcess) -> Counter[str]:
        return Counter({row["item_id"]: row["count"] for row in w.json("/trending")["items"]})

    log = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_until(lambda: trending(worker) == expected, 90, "not every event counted")
        bucket_ms = settings.trending_window_s * 1000 // 12
        # The timer (not a shutdown hook: the worker is killed) has written every partition's window.
        wait_until(lambda: persisted_trending(settings, bucket_ms) == expected, 60, "trending not persisted")
        before = trending(worker)
    finally:
        worker.kill()

    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metrics().get("behavior_stream_users") == 24, 60, "recovery incomplete")
        # Replayed input is skipped by the users' offsets, so only the restore can refill it.
        wait_until(lambda: trending(worker) == before, 60, "trending not restored")
        assert sum(before.values()) == len(events)
    finally:
        worker.stop()
    assert "trending windows of partitions [0, 1, 2, 3] restored" in log.read_text()

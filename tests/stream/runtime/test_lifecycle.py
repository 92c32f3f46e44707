"""State lifecycle on the real broker: TTL eviction and DELETE leave tombstones, survive restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.state import user_key
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import replay_events
from tests.streamkit import WorkerProcess, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

HOUR = 3_600_000
TOKEN = "s3cret-token"


def user_events(user: str, start: int, items: list[str], n: int = 5) -> list[Event]:
    return [make_event(user, EventType.CLICK, start + i * 60_000, items[i % len(items)]) for i in range(n)]


def test_ttl_eviction_and_delete_survive_restart(
    broker: EmbeddedBroker, tmp_path: Path, taobao_checkpoint: Path
) -> None:
    items = list(ModelEngine.from_checkpoint(taobao_checkpoint).vocab.items[:20])
    t0 = 1_700_000_000_000
    old = [e for u in ("old-1", "old-2") for e in user_events(u, t0, items)]
    recent = [e for u in ("new-1", "new-2", "new-3") for e in user_events(u, t0 + 10 * HOUR, items)]
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, state_ttl_s=2 * 3600, api_token=TOKEN
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
        assert worker.get("/users/old-1/representation")[0] == 404
        assert worker.get("/users/new-1/representation")[0] == 200

        # DELETE needs the bearer token when one is configured, and is audited in the log.
        assert worker.get("/users/new-1", method="DELETE")[0] == 401
        bad = {"Authorization": "Bearer wrong"}
        assert worker.get("/users/new-1", method="DELETE", headers=bad)[0] == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert worker.get("/users/new-1", method="DELETE", headers=good)[0] == 200
        assert worker.get("/users/new-1/recommendations")[0] == 404
        assert worker.get("/users/new-1", method="DELETE", headers=good)[0] == 404
    finally:
        worker.stop()
    assert "DELETE /users/new-1: erased=True" in log.read_text()

    # Tombstones are in the changelog, so a restarted worker does not resurrect anyone.
    changelog = read_topic(settings, f"{settings.app_id}-user-state-changelog")
    tombstones = {r.key for r in changelog if r.value is None}
    assert {user_key("old-1"), user_key("old-2"), user_key("new-1")} <= tombstones
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metrics().get("behavior_stream_users") == 2, 60, "recovery incomplete")
        for gone in ("old-1", "old-2", "new-1"):
            assert worker.get(f"/users/{gone}/representation")[0] == 404
        for kept in ("new-2", "new-3"):
            assert worker.get(f"/users/{kept}/representation")[0] == 200
    finally:
        worker.stop()

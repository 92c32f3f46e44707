"""A/B on the real broker: two checkpoints served at once, /experiments, promotion with no restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import variant_of
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import Producer, replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from tests.streamkit import make_checkpoint, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]


def test_two_variants_then_promotion_without_restart(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    items = list(ModelEngine.from_checkpoint(taobao_checkpoint, ann_threshold=0).vocab.items)
    b_path = make_checkpoint(tmp_path / "b.pt", items, seed=5)
    b_version = ModelEngine.from_checkpoint(b_path, ann_threshold=0).version
    events = taobao_events[:8000]
    first, second = events[:4000], events[4000:]
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, ab_checkpoint=b_path, ab_split=0.5
    )
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        asyncio.run(replay_events(settings, first))
        wait_until(
            lambda: total(worker.metrics(), "behavior_stream_events_total") >= len(first), 300, "first half"
        )
        exp = worker.json("/experiments")
        assert set(exp["variants"]) == {"A", "B"}
        assert exp["variants"]["B"]["model_version"] == b_version
        assert exp["variants"]["A"]["predictions"] > 0 and exp["variants"]["B"]["predictions"] > 0
        assert "p_value" in exp["recall@20_b_minus_a"]
        # One worker: the group is this worker, and every variant counts its users (the clusters).
        [(_, own)] = exp["workers"].items()
        assert own["users"] == sum(v["users"] for v in exp["variants"].values()) > 0
        recs = [
            orjson.loads(r.value) for r in read_topic(settings, settings.recommendations_topic, idle_s=1.5)
        ]
        assert all(r["variant"] == variant_of(r["user_id"], 0.5) for r in recs)

        # Promote B with a control message: no restart; every later output is served by B.
        async def promote() -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(
                    settings.control_topic, [(b"promote", b'{"command": "promote", "variant": "B"}')]
                )

        asyncio.run(promote())
        wait_until(lambda: worker.json("/experiments")["split_b"] == 1.0, 60, "promotion not applied")
        asyncio.run(replay_events(settings, second))
        wait_until(
            lambda: total(worker.metrics(), "behavior_stream_events_total") >= len(events), 300, "second half"
        )
        later = [
            orjson.loads(r.value) for r in read_topic(settings, settings.recommendations_topic, idle_s=1.5)
        ]
        after = [r for r in later if r["ts"] >= second[0].ts]
        assert after and all(r["variant"] == "B" and r["model_version"] == b_version for r in after)
        # Users who were always on B kept their state: events_seen counts every event.
        user = next(e.user_id for e in reversed(second) if variant_of(e.user_id, 0.5) == "B")
        rep = worker.json(f"/users/{user}/representation")
        assert rep["events_seen"] == sum(e.user_id == user for e in events)
        assert worker.alive()
    finally:
        worker.stop()

"""10k hostile records mixed into valid traffic on the real broker: the worker stays up, every bad
record reaches the DLQ with its reason, and the valid users' states are exactly as without them."""

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
from behavior_stream.testing.hostile import hostile_records
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import Producer
from behavior_stream.testing.workerproc import WorkerProcess
from tests.streamkit import read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]


def test_hostile_records_do_not_hurt_valid_traffic(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    valid = taobao_events[:20_000]
    hostile = hostile_records(10_000, seed=11)
    rng = random.Random(5)
    records: list[tuple[bytes | None, bytes]] = [(e.user_id.encode(), e.to_json()) for e in valid]
    for _, _, raw in hostile:  # hostile records land between valid ones, keyed or not
        key = rng.choice([None, b"hostile", valid[rng.randrange(len(valid))].user_id.encode()])
        records.insert(rng.randrange(len(records) + 1), (key, raw))
    # Valid events keep their relative order (insertions never reorder them), so the offline
    # reference below is the same sequence per user.
    settings = stream_settings(broker, tmp_path, taobao_checkpoint, ann_threshold=0)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()

        async def produce() -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(settings.input_topic, records)

        asyncio.run(produce())
        wait_until(
            lambda: total(worker.metrics(), "behavior_stream_events_total") >= len(valid),
            600,
            "valid events not all applied",
            interval=2.0,
        )
        wait_until(
            lambda: total(worker.metrics(), "behavior_stream_invalid_events_total") >= len(hostile),
            120,
            "hostile records not all rejected",
        )
        assert worker.alive()
        metrics = worker.metrics()
        expected_reasons = Counter(reason.value for _, reason, _ in hostile)
        for reason, n in expected_reasons.items():
            assert metrics[f'behavior_stream_invalid_events_total{{reason="{reason}"}}'] == n, reason
        dlq = [orjson.loads(r.value) for r in read_topic(settings, settings.dlq_topic)]
        assert Counter(d["error"] for d in dlq) == expected_reasons
        last: dict[str, dict] = {}
        for rec in read_topic(settings, settings.representations_topic):
            rep = orjson.loads(rec.value)
            last[rep["user_id"]] = rep
    finally:
        worker.stop()
    engine = ModelEngine.from_checkpoint(taobao_checkpoint)
    expected = representations(replay_states(valid, engine), engine)
    assert set(last) == set(expected)
    worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
    assert worst <= 1e-4, worst

"""Two workers in one consumer group on the real broker: they split the partitions, a worker can
join mid-replay and leave again, and the final states equal one worker's (an offline replay)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.replay import replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from tests.streamkit import latest_representations, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]


def applied(*workers: WorkerProcess) -> float:
    return sum(
        v for w in workers for k, v in w.metrics().items() if k.startswith("behavior_stream_events_total")
    )


def test_second_worker_joins_and_leaves_mid_replay(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    events = taobao_events[:30_000]
    thirds = [events[:10_000], events[10_000:20_000], events[20_000:]]
    settings = stream_settings(broker, tmp_path, taobao_checkpoint, ann_threshold=0)
    second: Settings = settings.model_copy(update={"web_port": free_port()})
    asyncio.run(ensure_topics(settings))
    one = WorkerProcess(settings, tmp_path / "one.log").start()
    two = WorkerProcess(second, tmp_path / "two.log")
    try:
        one.wait_ready()
        asyncio.run(replay_events(settings, thirds[0]))
        wait_until(lambda: applied(one) >= len(thirds[0]), 300, "first third not applied")

        two.start()  # joins mid-replay: the group rebalances and the partitions are split
        two.wait_ready()
        asyncio.run(replay_events(settings, thirds[1]))
        wait_until(
            lambda: one.metrics()["behavior_stream_users"] > 0 and two.metrics()["behavior_stream_users"] > 0,
            300,
            "the second worker took no partition",
        )
        users_by_worker = (one.metrics()["behavior_stream_users"], two.metrics()["behavior_stream_users"])

        two.stop()  # leaves: its partitions move back to the first worker, recovered from the changelog
        asyncio.run(replay_events(settings, thirds[2]))
        per_user = Counter(e.user_id for e in events)
        wait_until(
            lambda: one.metrics()["behavior_stream_users"] == len(per_user), 300, "users not recovered"
        )

        def final() -> dict[str, dict]:
            return latest_representations(settings)

        wait_until(
            lambda: (
                all(r["events_seen"] == per_user[u] for u, r in final().items())
                and len(final()) == len(per_user)
            ),
            300,
            "not every event was applied exactly once",
            interval=3.0,
        )
        last = final()
    finally:
        two.stop()
        one.stop()
    assert all(n > 0 for n in users_by_worker), users_by_worker
    engine = ModelEngine.from_checkpoint(taobao_checkpoint)
    expected = representations(replay_states(events, engine), engine)
    worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
    assert worst <= 1e-4, worst

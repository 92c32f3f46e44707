"""Warm restarts on the RocksDB store: a restarted worker reads the changelog only past the offset
persisted with its local data, after a clean stop and after a SIGKILL, and stays exact.

What is read is observed honestly: `behavior_stream_changelog_recovery_records_total` counts
every changelog record Faust's recovery hands the store (applied or skipped), and the changelog
itself is read whole to compare.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import replay_events
from tests.streamkit import WorkerProcess, latest_representations, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

RECOVERY = "behavior_stream_changelog_recovery_records_total"


def recovery_reads(worker: WorkerProcess) -> tuple[float, float]:
    """(applied, skipped) changelog records of the worker's recovery so far."""
    m = worker.metrics()
    return m[f'{RECOVERY}{{outcome="applied"}}'], m[f'{RECOVERY}{{outcome="skipped"}}']


def changelog_size(settings: Settings) -> int:
    return len(read_topic(settings, f"{settings.app_id}-user-state-changelog", idle_s=2.0))


def wait_caught_up(settings: Settings, events: Sequence[Event]) -> None:
    per_user = Counter(e.user_id for e in events)

    def done() -> bool:
        last = latest_representations(settings)
        return len(last) == len(per_user) and all(r["events_seen"] >= per_user[u] for u, r in last.items())

    wait_until(done, 600, "the worker did not catch up", interval=3.0)


def assert_exact(settings: Settings, events: Sequence[Event], checkpoint: Path) -> None:
    per_user = Counter(e.user_id for e in events)
    last = latest_representations(settings)
    engine = ModelEngine.from_checkpoint(checkpoint)
    expected = representations(replay_states(list(events), engine), engine)
    assert set(last) == set(expected)
    assert all(last[u]["events_seen"] == per_user[u] for u in expected), "an event was lost or applied twice"
    worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
    assert worst <= 1e-4, worst


def test_restarts_read_only_the_changelog_past_the_local_offset(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    events = taobao_events[:40_000]
    first, second = events[:20_000], events[20_000:]
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, max_batch=250, store="rocksdb"
    )
    asyncio.run(ensure_topics(settings))
    log = tmp_path / "worker.log"
    asyncio.run(replay_events(settings, first))
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_caught_up(settings, first)
        # A cold start on an empty data dir reads the changelog from the beginning.
        assert recovery_reads(worker) == (0, 0)
    finally:
        worker.stop()
    users_first = len({e.user_id for e in first})
    held = changelog_size(settings)
    assert held > users_first  # one record per touched user per batch, plus fences

    # Clean stop: the whole state is on disk; recovery reads at most the last fences again.
    asyncio.run(replay_events(settings, second))
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_until(lambda: worker.metrics()["behavior_stream_users"] >= users_first, 120, "state not loaded")
        wait_until(lambda: total(worker.metrics(), "behavior_stream_events_total") > 1000, 120, "no progress")
        applied, skipped = recovery_reads(worker)
        print(f"warm restart after a clean stop: {applied:.0f} applied + {skipped:.0f} skipped of {held}")
        assert applied + skipped <= 8  # at most each partition's last fence, read again
        worker.kill()  # mid-way through the second half
    finally:
        worker.stop()
    held = changelog_size(settings)

    # SIGKILL: the local data ends at its last persisted fence; what was sent after it is read.
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        wait_caught_up(settings, events)
        # This worker applied events itself, so the kill did hit mid-way through the input.
        assert total(worker.metrics(), "behavior_stream_events_total") > 0
        applied, skipped = recovery_reads(worker)
        print(f"warm restart after SIGKILL: {applied:.0f} applied + {skipped:.0f} skipped of {held}")
        # At most the batch in flight (its users and fences) and each partition's last fence
        # again: a small share of the changelog.
        bound = settings.max_batch + 2 * settings.partitions
        assert applied + skipped <= bound and held > 10 * bound
        assert_exact(settings, events, taobao_checkpoint)
    finally:
        worker.stop()

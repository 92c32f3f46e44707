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
from pathlib import Path

import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import replay_events
from tests.streamkit import (
    WorkerProcess,
    stream_settings,
    wait_until,
)
from tests.system.exactness import assert_caught_up_and_exact

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
        assert_caught_up_and_exact(settings, events, taobao_checkpoint, 600, 3.0)
    finally:
        worker.stop()

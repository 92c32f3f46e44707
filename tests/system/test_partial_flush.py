"""A worker dies in the middle of a batch's flush, with its sends partly acknowledged; the states
stay exact and every event keeps its outputs.

The `crash_at` test fault makes the worker exit at once (no cleanup, as a SIGKILL would) when a
flush reaches a point of the protocol (stream/commit/checkpoint.py, step 3): the batch's
outputs acknowledged and nothing else of it sent (`outputs_acked`); its state records and
fences queued, none acknowledged, the next batch's outputs possibly in flight (`state_queued`);
its state records acknowledged, its fences not (`state_acked`). One worker crashes at each in
turn on the same input, then a last one catches up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.runtime.app import CRASH_EXIT_CODE
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import replay_events
from tests.streamkit import WorkerProcess, stream_settings
from tests.system.exactness import assert_caught_up_and_exact

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

POINTS = ("outputs_acked", "state_queued", "state_acked")


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_crashes_with_a_flush_partly_acknowledged_keep_states_exact(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path, store: str
) -> None:
    events = taobao_events[:8_000]
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, max_batch=200, store=store
    )
    asyncio.run(ensure_topics(settings))
    asyncio.run(replay_events(settings, events))
    log = tmp_path / "worker.log"
    for i, point in enumerate(POINTS):
        # A few flushes pass first, so each crash lands later in the input than the last one.
        faulty = settings.model_copy(update={"crash_at": point, "crash_after_batches": 3 + 2 * i})
        worker = WorkerProcess(faulty, log).start()
        assert worker.proc is not None
        worker.proc.wait(timeout=180)
        assert worker.proc.returncode == CRASH_EXIT_CODE, f"no crash at {point}; see {log}"
    assert log.read_text().count("test fault: exiting at") == len(POINTS)

    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_ready()
        assert_caught_up_and_exact(settings, events, taobao_checkpoint, 300, 2.0)
    finally:
        worker.stop()

"""Control commands reach every worker of a group, survive restarts, and /experiments sums the group.

Two workers in one consumer group on the real broker: a reload sent to the control topic and a
promotion sent through one worker's API are applied by both; after both restart, the folded
control topic gives them the same serving state before they process the events that waited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.runtime.control import Command, fold, parse_command
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import Producer, replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from tests.streamkit import make_checkpoint, read_topic, stream_settings, wait_until

log = logging.getLogger(__name__)


def test_commands_without_id_get_one_from_content_and_timestamp() -> None:
    raw = b'{"command": "reload", "path": "/m.pt"}'
    cmd = parse_command(raw, timestamp_ms=5)
    assert (cmd.command, cmd.variant, cmd.path, cmd.key) == ("reload", "A", "/m.pt", b"reload:A")
    assert parse_command(raw, 5).id == cmd.id  # a redelivered record keeps its id
    assert parse_command(b'{"path": "/m.pt", "command": "reload"}', 5).id == cmd.id  # key order
    assert parse_command(raw, 6).id != cmd.id  # the same command sent again is a new command
    assert parse_command(b'{"id": "x", "command": "promote", "variant": "B"}').id == "x"
    assert parse_command(cmd.encode()) == cmd
    for bad in (b"[]", b'{"command": "drop"}', b'{"command": "promote", "variant": "C"}'):
        with pytest.raises(ValueError):
            parse_command(bad)


def test_fold_keeps_the_latest_command_of_each_key_reloads_first() -> None:
    log_ = [
        Command("1", "promote", "B"),
        Command("2", "reload", "A", "/a1.pt"),
        Command("3", "reload", "B", "/b1.pt"),
        Command("4", "reload", "A", "/a2.pt"),
        Command("5", "promote", "A"),
        Command("6", "promote", "B"),
    ]
    assert [c.id for c in fold(log_)] == ["4", "3", "6"]


def served(worker: WorkerProcess) -> tuple[str, float]:
    """The worker's control model version and its share of users on B."""
    return worker.json("/health")["model_version"], worker.json("/experiments")["split_b"]


def post(worker: WorkerProcess, path: str) -> dict:
    status, body = worker.get(path, method="POST")
    return {"status": status, **orjson.loads(body)}


@pytest.mark.broker
@pytest.mark.timeout(600)
def test_two_workers_apply_every_command_and_keep_it_over_restarts(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    items = list(ModelEngine.from_checkpoint(taobao_checkpoint, ann_threshold=0).vocab.items)
    a0 = ModelEngine.from_checkpoint(taobao_checkpoint, ann_threshold=0).version
    b_path = make_checkpoint(tmp_path / "b.pt", items, seed=5)
    a2_path = make_checkpoint(tmp_path / "a2.pt", items, seed=7)
    b_version = ModelEngine.from_checkpoint(b_path, ann_threshold=0).version
    a2_version = ModelEngine.from_checkpoint(a2_path, ann_threshold=0).version
    first = taobao_events[:4000]
    second = [e for e in taobao_events[4000:6000] if e.ts > first[-1].ts]  # strictly later: no ts tie
    settings = stream_settings(
        broker, tmp_path, taobao_checkpoint, ann_threshold=0, ab_checkpoint=b_path, ab_split=0.5
    )
    other: Settings = settings.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / "faust2"})
    asyncio.run(ensure_topics(settings))
    workers = [WorkerProcess(settings, tmp_path / "one.log"), WorkerProcess(other, tmp_path / "two.log")]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        asyncio.run(replay_events(settings, first))
        wait_until(
            lambda: sum(total(w.metrics(), "behavior_stream_events_total") for w in workers) >= len(first),
            300,
            "first events not applied",
        )

        # /experiments on either worker sums both workers' users (published every 2 s).
        def group_counted(w: WorkerProcess) -> bool:
            per_worker = w.json("/experiments")["workers"]
            return len(per_worker) == 2 and all(v["users"] > 0 for v in per_worker.values())

        wait_until(lambda: all(group_counted(w) for w in workers), 60, "stats of both workers not seen")
        docs = [w.json("/experiments") for w in workers]
        for doc in docs:
            users = sum(v["users"] for v in doc["variants"].values())
            assert users == sum(v["users"] for v in doc["workers"].values())
            assert users > max(v["users"] for v in doc["workers"].values())
            assert "p_value" in doc["recall@20_b_minus_a"]
        assert all(served(w) == (a0, 0.5) for w in workers)

        # A reload sent straight to the control topic, without an id: both workers serve it.
        async def send_reload() -> None:
            async with Producer(settings) as producer:
                body = orjson.dumps({"command": "reload", "path": str(a2_path)})
                await producer.send_keyed(settings.control_topic, [(b"reload:A", body)])

        t0 = time.monotonic()
        asyncio.run(send_reload())
        wait_until(lambda: all(served(w)[0] == a2_version for w in workers), 60, "reload not applied")
        log.info("reload propagation to both workers: %.2f s", time.monotonic() - t0)

        # A promotion through one worker's API: it answers once applied, and the other applies it too.
        t0 = time.monotonic()
        answer = post(workers[0], "/experiments/promote/B")
        assert answer["status"] == 200 and answer["applied"] is True and answer["split_b"] == 1.0
        wait_until(lambda: served(workers[1])[1] == 1.0, 60, "promotion not applied by the other worker")
        log.info("promotion propagation to both workers: %.2f s", time.monotonic() - t0)

        # Restart both; events produced while they are down wait for them.
        for w in workers:
            w.stop()
        asyncio.run(replay_events(settings, second))
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        wait_until(lambda: all(served(w) == (a2_version, 1.0) for w in workers), 60, "state lost on restart")
        wait_until(
            lambda: sum(total(w.metrics(), "behavior_stream_events_total") for w in workers) >= len(second),
            300,
            "events after the restart not applied",
        )
        recs = [
            orjson.loads(r.value) for r in read_topic(settings, settings.recommendations_topic, idle_s=1.5)
        ]
        after = [r for r in recs if r["ts"] >= second[0].ts]
        # The restarted workers folded the control topic before their first event: every feed is B's.
        assert after and all(r["variant"] == "B" and r["model_version"] == b_version for r in after)
        assert all(w.alive() for w in workers)
    finally:
        for w in workers:
            w.stop()

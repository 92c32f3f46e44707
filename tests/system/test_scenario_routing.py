"""Two workers in one group: a search (a POST with a body) or a personalised related-items request
sent to either worker is answered for the user's owner, with the same answer from both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.replay import Producer
from behavior_stream.testing.workerproc import WorkerProcess
from tests.scenariokit import ITEMS, random_checkpoint
from tests.streamkit import stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

T = 1_700_000_000_000
USERS = [f"user-{n}" for n in range(24)]  # spread over the 4 partitions


def post(worker: WorkerProcess, path: str, body: dict) -> tuple[int, dict]:
    status, answer = worker.get(path, "POST", data=orjson.dumps(body), timeout=20)
    return status, orjson.loads(answer)


def test_either_worker_answers_for_every_user(broker: EmbeddedBroker, tmp_path: Path) -> None:
    checkpoint = random_checkpoint(tmp_path / "model.pt", {})
    settings = stream_settings(broker, tmp_path, checkpoint, ann_threshold=0)
    second: Settings = settings.model_copy(update={"web_port": free_port()})
    asyncio.run(ensure_topics(settings))
    events = [
        make_event(u, EventType.CLICK, T + j * 1000, ITEMS[(n * 3 + j) % len(ITEMS)])
        for n, u in enumerate(USERS)
        for j in range(3)
    ]
    one = WorkerProcess(settings, tmp_path / "one.log").start()
    two = WorkerProcess(second, tmp_path / "two.log").start()
    try:
        one.wait_ready()
        two.wait_ready()

        async def produce() -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(
                    settings.input_topic, [(e.user_id.encode(), e.to_json()) for e in events]
                )

        asyncio.run(produce())

        def users(w: WorkerProcess) -> float:
            return w.metrics()["behavior_stream_users"]

        wait_until(lambda: users(one) + users(two) == len(USERS), 180, "not every user applied")
        assert users(one) > 0 and users(two) > 0, "one worker owns every partition"
        for user in USERS:
            answers = [post(w, f"/users/{user}/search", {"query": "lamp", "k": 5}) for w in (one, two)]
            assert [s for s, _ in answers] == [200, 200], (user, answers)
            assert answers[0][1] == answers[1][1]
            related = [w.json(f"/items/i5/related?k=5&user={user}") for w in (one, two)]
            assert related[0]["status"] == 200 and related[0] == related[1]
        # A bad body is judged by the owner too, and the 400 comes back through the forward.
        assert {
            post(w, f"/users/{USERS[0]}/search", {"query": "lamp", "k": 0})[1]["field"] for w in (one, two)
        } == {"k"}
    finally:
        two.stop()
        one.stop()

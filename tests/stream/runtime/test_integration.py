"""End to end on the real embedded broker: a Taobao replay with bad records and duplicates mixed in.

One worker subprocess consumes the replay; the test then checks the issue's six properties:
final representations equal an offline replay, DLQ contents, duplicates not applied, /metrics
counters, HTTP lookups, and a hot model reload.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.prometheus import LOOP_PHASES
from behavior_stream.testing.broker import EmbeddedBroker
from behavior_stream.testing.replay import Producer
from tests.streamkit import WorkerProcess, make_checkpoint, read_topic, stream_settings, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.timeout(900)]

BAD_RECORDS: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b'{"user_id": "1", "type": "click"', "not_json"),
    (b"[[[[[]]]]]", "not_object"),
    (b'{"user_id": "1", "type": "teleport", "item_id": "5", "ts": 1511544070000}', "unknown_type"),
    (b'{"user_id": "1", "type": "click", "item_id": "5", "ts": -1}', "bad_timestamp"),
    (b'{"user_id": "1", "type": "click", "ts": 1511544070000}', "missing_field"),
    (b'{"user_id": 17, "type": "click", "item_id": "5", "ts": 1511544070000}', "wrong_type"),
    (b'{"user_id": "", "type": "click", "item_id": "5", "ts": 1511544070000}', "empty_field"),
    (
        b'{"user_id": "1", "type": "search", "query": "' + b"q" * 600 + b'", "ts": 1511544070000}',
        "field_too_long",
    ),
    (b'{"pad": "' + b"x" * 17000 + b'"}', "oversize"),
]


def build_stream(events: list[Event], n_bad: int, n_dup: int, seed: int = 0) -> tuple[list, Counter, int]:
    """Interleave valid events, bad records and immediate re-sends; returns (records, bad reasons, dups)."""
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(len(events)), n_bad))
    dup_at = set(rng.sample(range(len(events)), n_dup))
    records: list[tuple[bytes | None, bytes]] = []
    reasons: Counter[str] = Counter()
    for i, ev in enumerate(events):
        key = ev.user_id.encode()
        records.append((key, ev.to_json()))
        if i in dup_at:
            records.append((key, ev.to_json()))  # a producer retry: same event id
        if i in bad_at:
            value, reason = BAD_RECORDS[i % len(BAD_RECORDS)]
            records.append((key, value))
            reasons[reason] += 1
    return records, reasons, len(dup_at)


def test_taobao_replay_end_to_end(
    broker: EmbeddedBroker, tmp_path: Path, taobao_events: list[Event], taobao_checkpoint: Path
) -> None:
    events = taobao_events
    checkpoint = tmp_path / "model.pt"
    shutil.copy(taobao_checkpoint, checkpoint)
    shutil.copy(f"{taobao_checkpoint}.sha256", f"{checkpoint}.sha256")
    settings = stream_settings(broker, tmp_path, checkpoint, reload_poll_s=0.5, ann_threshold=0)
    asyncio.run(ensure_topics(settings))
    records, bad_reasons, n_dup = build_stream(events, n_bad=500, n_dup=300)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()

        async def produce(batch: list) -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(settings.input_topic, batch)

        asyncio.run(produce(records))
        types = Counter(e.type.value for e in events)
        wait_until(
            lambda: (
                sum(v for k, v in worker.metrics().items() if k.startswith("behavior_stream_events_total"))
                >= len(events)
            ),
            600,
            "worker did not apply every valid event",
            interval=2.0,
        )
        metrics = worker.metrics()

        # (4) counters equal what was sent
        for t, n in types.items():
            assert metrics[f'behavior_stream_events_total{{type="{t}"}}'] == n
        for reason, n in bad_reasons.items():
            assert metrics[f'behavior_stream_invalid_events_total{{reason="{reason}"}}'] == n
        assert metrics["behavior_stream_duplicate_events_total"] == n_dup  # (3)
        # Where the batch loop's time went: every phase is exposed, and the batches were computed.
        loop = {p: metrics[f'behavior_stream_batch_loop_seconds_total{{phase="{p}"}}'] for p in LOOP_PHASES}
        assert loop["compute"] > 0 and all(v >= 0 for v in loop.values())
        n_users = len({e.user_id for e in events})  # the users gauge is refreshed every 2 s
        wait_until(lambda: worker.metrics()["behavior_stream_users"] == n_users, 30, "users gauge")

        # (2) every bad record is in the DLQ with its reason
        dlq = [orjson.loads(r.value) for r in read_topic(settings, settings.dlq_topic)]
        assert Counter(d["error"] for d in dlq) == bad_reasons
        assert all({"error", "raw", "topic", "partition", "offset", "ts"} <= set(d) for d in dlq)

        # (1) final representations equal an offline replay of the same step and codec
        engine = ModelEngine.from_checkpoint(checkpoint)
        expected = representations(replay_states(events, engine), engine)
        last: dict[str, dict] = {}
        for rec in read_topic(settings, settings.representations_topic):
            rep = orjson.loads(rec.value)
            last[rep["user_id"]] = rep
        assert set(last) == set(expected)
        worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
        assert worst <= 1e-4, worst
        per_user = Counter(e.user_id for e in events)
        assert all(last[u]["events_seen"] == per_user[u] for u in expected)  # (3) duplicates not applied

        # (5) HTTP lookups return the final state
        for user in list(expected)[:5]:
            status, body = worker.get(f"/users/{user}/representation")
            assert status == 200
            got = orjson.loads(body)
            np.testing.assert_allclose(got["vector"], expected[user], atol=1e-4)
            assert got["events_seen"] == per_user[user]
            status, body = worker.get(f"/users/{user}/recommendations")
            assert status == 200 and len(orjson.loads(body)["items"]) == settings.top_k
        assert worker.get("/users/nobody-here/representation")[0] == 404

        # (6) a new checkpoint at the watched path is hot-reloaded; later outputs carry its version
        old_version = engine.version
        staged = make_checkpoint(tmp_path / "staged.pt", list(engine.vocab.items), seed=2)
        new_version = ModelEngine.from_checkpoint(staged).version
        assert new_version != old_version
        shutil.copy(f"{staged}.sha256", f"{checkpoint}.sha256")
        shutil.copy(staged, checkpoint)
        wait_until(
            lambda: (
                worker.metrics().get(f'behavior_stream_model_info{{variant="A",version="{new_version}"}}')
                == 1.0
            ),
            60,
            "model was not reloaded",
        )
        tail = events[-50:]
        later = [(e.user_id.encode(), orjson.dumps({**e.to_dict(), "event_id": None, "ts": e.ts + 1000}))
                 for e in tail]  # fmt: skip
        asyncio.run(produce(later))
        wait_until(
            lambda: any(
                orjson.loads(r.value)["model_version"] == new_version
                for r in read_topic(settings, settings.recommendations_topic, idle_s=1.0)[-200:]
            ),
            60,
            "no output with the new model version",
        )
    finally:
        worker.stop()

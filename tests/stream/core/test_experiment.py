"""Online A/B: stable hash split, significance test, per-variant state isolation, promotion."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import bucket_of, two_proportion_test, variant_of
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.state import decode_state, user_key
from tests.streamkit import make_checkpoint


def test_split_is_stable_and_proportional() -> None:
    users = [f"user-{i}" for i in range(50_000)]
    assert [variant_of(u, 0.3) for u in users[:100]] == [variant_of(u, 0.3) for u in users[:100]]
    share = sum(variant_of(u, 0.3) == "B" for u in users) / len(users)
    assert abs(share - 0.3) < 0.01
    # Ramping the split up only moves users from A to B, never back.
    assert all(variant_of(u, 0.5) == "B" for u in users if variant_of(u, 0.3) == "B")
    assert all(variant_of(u, 0.0) == "A" and variant_of(u, 1.0) == "B" for u in users[:1000])
    assert bucket_of("same") == bucket_of("same")


def test_two_proportion_test_hand_computed() -> None:
    # A: 100/1000, B: 150/1000 -> diff 0.05; pooled p = 0.125, se0 = sqrt(.125*.875*.002) = 0.014790
    t = two_proportion_test(100, 1000, 150, 1000)
    assert t["diff"] == pytest.approx(0.05)
    assert t["z"] == pytest.approx(0.05 / math.sqrt(0.125 * 0.875 * 0.002), rel=1e-9)
    assert t["p_value"] == pytest.approx(math.erfc(t["z"] / math.sqrt(2)), rel=1e-9)
    assert t["p_value"] < 0.001 and t["ci_low"] > 0
    assert two_proportion_test(10, 100, 10, 100)["p_value"] == pytest.approx(1.0)
    assert math.isnan(two_proportion_test(0, 0, 1, 10)["diff"])


@pytest.fixture(scope="module")
def engines(
    taobao_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelEngine, ModelEngine]:
    a = ModelEngine.from_checkpoint(taobao_checkpoint, ann_threshold=0)
    b_path = make_checkpoint(tmp_path_factory.mktemp("b") / "b.pt", list(a.vocab.items), seed=9)
    b = ModelEngine.from_checkpoint(b_path, ann_threshold=0)
    a.share_vocabularies(b)
    return a, b


def ab_ctx(a: ModelEngine, b: ModelEngine, split: float) -> StreamContext:
    return StreamContext(
        engine=a,
        treatment=b,
        split=split,
        store={},
        input_topic="in",
        repartition_topic="re",
        representations_topic="reps",
        recommendations_topic="recs",
        dlq_topic="dlq",
    )


def feed(ctx: StreamContext, events: list[Event], start: int = 0) -> list:
    recs = [
        InputRecord("in", 0, start + i, e.user_id.encode(), e.to_json(), 0.0) for i, e in enumerate(events)
    ]
    return [process_batch(recs[i : i + 500], ctx) for i in range(0, len(recs), 500)]


def test_each_variant_keeps_its_own_state(
    engines: tuple[ModelEngine, ModelEngine], taobao_events: list[Event]
) -> None:
    a, b = engines
    events = taobao_events[:5000]
    ctx = ab_ctx(a, b, 0.5)
    results = feed(ctx, events)
    variants = {u: variant_of(u, 0.5) for u in {e.user_id for e in events}}
    assert set(variants.values()) == {"A", "B"}
    for variant, engine in (("A", a), ("B", b)):
        mine = [e for e in events if variants[e.user_id] == variant]
        expected = representations(replay_states(mine, engine), engine)
        got = {u: decode_state(ctx.store[user_key(u)]) for u in expected}
        assert all(st.model_tag == engine.tag for st in got.values())
        got_vec = representations(got, engine)
        assert max(float(np.abs(got_vec[u] - expected[u]).max()) for u in expected) <= 1e-4
    for r in results:
        for m in r.messages:
            body = orjson.loads(m.value)
            assert body["variant"] == variants[body["user_id"]]
            assert body["model_version"] == (a if body["variant"] == "A" else b).version
    assert {v for r in results for v, _ in r.stats.ranks} == {"A", "B"}


def test_promotion_moves_everyone_without_losing_b_states(
    engines: tuple[ModelEngine, ModelEngine], taobao_events: list[Event]
) -> None:
    a, b = engines
    events = taobao_events[:6000]
    ctx = ab_ctx(a, b, 0.5)
    feed(ctx, events[:3000])
    ctx.split = 1.0  # promote B: what the control message and the API do
    results = feed(ctx, events[3000:], start=3000)
    bodies = [orjson.loads(m.value) for r in results for m in r.messages]
    assert {body["variant"] for body in bodies} == {"B"}
    assert {body["model_version"] for body in bodies} == {b.version}
    # Users who were already on B continue their state exactly as if nothing happened.
    stayed = [e for e in events if variant_of(e.user_id, 0.5) == "B"]
    expected = representations(replay_states(stayed, b), b)
    got = representations({u: decode_state(ctx.store[user_key(u)]) for u in expected}, b)
    assert max(float(np.abs(got[u] - expected[u]).max()) for u in expected) <= 1e-4
    # Users moved from A are adopted by B: their events keep counting.
    moved = {e.user_id for e in events[3000:]} - {e.user_id for e in stayed}
    for u in list(moved)[:20]:
        st = decode_state(ctx.store[user_key(u)])
        assert st.model_tag == b.tag
        assert st.events_seen == sum(e.user_id == u for e in events)

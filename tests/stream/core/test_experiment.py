"""Online A/B: stable hash split, significance test, per-variant state isolation, promotion."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import (
    ClusterSums,
    VariantCounts,
    VariantStats,
    bucket_of,
    clustered_difference,
    clustered_rate,
    merge_stats,
    summary,
    two_proportion_test,
    variant_of,
)
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.state import decode_state, user_key
from tests.corekit import core_context
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


def test_cluster_sums_hand_computed_and_mergeable() -> None:
    # users (n, h): (3, 1), (2, 2) -> G 2, n 5, h 3, h2 1+4, n2 9+4, hn 3+4
    s = ClusterSums.of([(3, 1), (2, 2), (0, 0)])  # a user without predictions is no cluster
    assert s == ClusterSums(users=2, n=5, h=3, h2=5, n2=13, hn=7)
    assert ClusterSums.of([(3, 1)]) + ClusterSums.of([(2, 2)]) == s


def test_clustered_rate_hand_computed() -> None:
    # (10, 10), (10, 0): p = 0.5; (100 - 2*.5*100 + .25*200) / 20^2 * 2/1 = 0.25
    p, var = clustered_rate(ClusterSums.of([(10, 10), (10, 0)]))
    assert p == pytest.approx(0.5) and var == pytest.approx(0.25)
    # One prediction per user is the binomial case up to G/(G-1): p(1-p)/(G-1).
    p, var = clustered_rate(ClusterSums.of([(1, 1)] * 3 + [(1, 0)] * 7))
    assert p == pytest.approx(0.3) and var == pytest.approx(0.3 * 0.7 / 9)
    assert all(math.isnan(x) for x in clustered_rate(ClusterSums.of([(5, 2)])))  # one user: undefined


def test_clustered_interval_is_wider_than_the_naive_one() -> None:
    # A: one user always hits, one never (p 0.5, var 0.25); B: both always hit (p 1, var 0).
    a, b = ClusterSums.of([(10, 10), (10, 0)]), ClusterSums.of([(10, 10), (10, 10)])
    t = clustered_difference(a, b)
    assert t["diff"] == pytest.approx(0.5)
    assert (t["ci_low"], t["ci_high"]) == (pytest.approx(0.5 - 1.96 * 0.5), pytest.approx(0.5 + 1.96 * 0.5))
    assert t["z"] == pytest.approx(1.0) and t["p_value"] == pytest.approx(math.erfc(1 / math.sqrt(2)))
    naive = two_proportion_test(10, 20, 20, 20)  # the same 40 events as independent draws
    assert naive["ci_high"] - naive["ci_low"] == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 20))
    assert t["ci_high"] - t["ci_low"] > 4 * (naive["ci_high"] - naive["ci_low"])
    assert naive["p_value"] < 0.001 < 0.05 < t["p_value"]  # significant only if events were independent
    assert math.isnan(clustered_difference(a, ClusterSums())["p_value"])


def test_worker_stats_merge_into_the_group_summary() -> None:
    one, two = VariantCounts(), VariantCounts()
    for user, rank in (("u1", 1), ("u1", None), ("u2", 30)):
        one.add_rank(rank, (20,))
        one.add_user_rank(user, rank)
    two.add_rank(3, (20,))
    two.add_user_rank("u3", 3)
    s1, s2 = one.stats(), two.stats()
    assert s1 == VariantStats(3, 1, 1.0, clusters=ClusterSums(2, 3, 1, 1, 5, 2))
    assert VariantStats.from_dict(orjson.loads(orjson.dumps(s1.to_dict()))) == s1
    merged = merge_stats([{"A": s1, "B": s1}, {"A": s2}])
    assert merged["A"] == VariantStats(4, 2, 1 + 1 / 3, clusters=ClusterSums(3, 4, 2, 2, 6, 3))
    doc = summary({"w1": {"A": s1, "B": s1}, "w2": {"A": s2}}, {"A": "va", "B": "vb"}, 0.5)
    assert doc["workers"] == {"w1": {"users": 4, "predictions": 6}, "w2": {"users": 1, "predictions": 1}}
    assert doc["variants"]["A"]["users"] == 3 and doc["variants"]["B"]["model_version"] == "vb"
    assert doc["variants"]["A"]["predictions"] == 4 and doc["variants"]["A"]["recall@20"] == pytest.approx(
        0.5
    )
    test = doc["recall@20_b_minus_a"]
    assert test["diff"] == pytest.approx(1 / 3 - 0.5) and test["significant"] is False


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
    return core_context(a, treatment=b, split=split, input_topic="in", repartition_topic="re", top_k=20)


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

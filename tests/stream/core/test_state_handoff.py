"""The stream ranks from the state its step produced (`step_states` -> `rank_batch`): the same
feeds, search/cart records, vectors and stored states as rebuilding the state from the
written-back user states and stepping copies for the searches (the path before the hand-off)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.core import process
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.lookahead import rank_after
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.scenarios import BatchRanking, ScenarioOptions, rank_batch
from behavior_stream.stream.core.state import UserState, decode_state
from behavior_stream.stream.core.trending import TrendingWindow
from tests.corekit import as_input_records, core_context
from tests.scenariokit import ITEMS, random_checkpoint

T = 1_700_000_000_000
TABLE = {"top_n": 20, "pairs": {"i1": [["i2", 5], ["i9", 1]], "i2": [["i1", 5]], "i3": [["i7", 2]]}}
KINDS = [EventType.CLICK] * 4 + [EventType.SEARCH, EventType.ADD_TO_CART, EventType.PURCHASE]


@pytest.fixture(scope="module", params=["hnsw", "exact"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelEngine:
    path = random_checkpoint(tmp_path_factory.mktemp("handoff") / "m.pt", {"bought_together": TABLE})
    # ann_threshold 1: HNSW over the 40 items, so the approximate path (and its `extra`) is used.
    return ModelEngine.from_checkpoint(path, ann_threshold=1 if request.param == "hnsw" else 0)


def random_events(n: int, users: int, seed: int) -> list[Event]:
    """A mixed stream: clicks, searches (some a user's last event in a batch, some not), carts and
    purchases (so users exclude different numbers of items and the HNSW `extra` varies)."""
    rng = random.Random(seed)
    out = []
    for t in range(n):
        kind = rng.choice(KINDS)
        user = f"u{rng.randrange(users)}"
        if kind is EventType.SEARCH:
            out.append(make_event(user, kind, T + 1000 * t, query=rng.choice(["red lamp", "sofa", "desk"])))
        else:
            out.append(make_event(user, kind, T + 1000 * t, rng.choice(ITEMS[:30]), session_id="s"))
    return out


def rebuilt_rank_batch(
    engine: ModelEngine,
    ms: ModelState,
    states: Sequence[UserState],
    pending: Sequence[Sequence[Event]],
    excluded: Sequence[set[int]],
    k: int,
    options: ScenarioOptions,
) -> BatchRanking:
    """The path before the hand-off: the state rebuilt from the written-back user states, each
    search answered by `rank_after` on stepped copies; `ms` is ignored."""
    users = engine.rank(engine.model_state(states), excluded, k)
    asked = [
        (i, next(e for e in reversed(evs) if e.type is EventType.SEARCH))
        for i, evs in enumerate(pending)
        if options.search and any(e.type is EventType.SEARCH for e in evs)
    ]
    hypothetical = [[] if pending[i][-1] is s else [s] for i, s in asked]
    answers = rank_after(
        engine, [states[i] for i, _ in asked], hypothetical, [excluded[i] for i, _ in asked], k
    )
    return BatchRanking(users, [(i, s, r) for (i, s), r in zip(asked, answers, strict=True)])


def run(ctx: StreamContext, events: list[Event], sizes: list[int]) -> list[list[tuple[str, bytes, dict]]]:
    records, out, i = as_input_records(events), [], 0
    for n in sizes:
        result = process_batch(records[i : i + n], ctx)
        out.append([(m.topic, m.key, orjson.loads(m.value)) for m in result.messages])
        i += n
    return out


def assert_same(a: object, b: object, path: str = "") -> None:
    """Equal JSON, floats up to rounding (wall-clock fields aside)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{n}]")
    else:
        assert a == b, path


def contexts(engine: ModelEngine) -> tuple[StreamContext, StreamContext]:
    options = ScenarioOptions(search=True, cart=True)
    exclude = ("purchased", "carted")
    return (
        core_context(engine, scenarios=options, exclude=exclude, fresh_slots=2),
        core_context(engine, scenarios=options, exclude=exclude, fresh_slots=2),
    )


def test_handed_state_gives_the_rebuilt_paths_outputs(
    engine: ModelEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = random_events(600, users=12, seed=1)
    sizes = [1, 3, 7, 7, 20, 2, 50, 7, 100, 5, 200, 7, 1, 190]
    assert sum(sizes) == len(events)
    handed, rebuilt = contexts(engine)
    got = run(handed, events, sizes)
    monkeypatch.setattr(process, "rank_batch", rebuilt_rank_batch)
    want = run(rebuilt, events, sizes)
    kinds = {(m[2].get("scenario"), m[0]) for batch in want for m in batch}
    searches = sum(m[2].get("scenario") == "search" for batch in want for m in batch)
    carts = sum(m[2].get("scenario") == "cart" for batch in want for m in batch)
    assert searches > 20 and carts > 20, kinds  # the scenario records are really compared
    for batch_got, batch_want in zip(got, want, strict=True):
        assert [(t, k) for t, k, _ in batch_got] == [(t, k) for t, k, _ in batch_want]
        for (_, _, a), (_, _, b) in zip(batch_got, batch_want, strict=True):
            a.pop("processed_ms", None)
            b.pop("processed_ms", None)
            assert_same(a, b)
    assert handed.store.keys() == rebuilt.store.keys()
    for key in handed.store:
        x, y = decode_state(handed.store[key]), decode_state(rebuilt.store[key])
        np.testing.assert_array_equal(x.hidden, y.hidden)
        np.testing.assert_array_equal(x.history, y.history)
        assert (x.carted, x.purchased, x.last_ts) == (y.carted, y.purchased, y.last_ts)


def test_recommend_from_a_ranking_equals_recommend_from_states(engine: ModelEngine) -> None:
    users = [f"u{i}" for i in range(6)]
    by_user = {u: [e for e in random_events(200, 6, seed=2) if e.user_id == u] for u in users}
    states = [engine.fresh_state() for _ in users]
    ms = engine.step_states(states, [by_user[u] for u in users], [-1] * len(users))
    excluded = [set(), {1, 2}, set(), {3}, set(), {4, 5, 6}]
    trending = TrendingWindow()
    handed = engine.recommend(states, excluded, 5, trending, engine.rank(ms, excluded, 5))
    rebuilt = engine.recommend(states, excluded, 5, trending)
    for a, b in zip(handed, rebuilt, strict=True):
        assert a.items == b.items and len(a.items) == 5
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        np.testing.assert_array_equal(a.vector, b.vector)
    # The handed state is the written-back one, tensor for tensor.
    again = engine.model_state(states)
    np.testing.assert_array_equal(ms.h.numpy(), again.h.numpy())
    np.testing.assert_array_equal(ms.history.numpy(), again.history.numpy())
    np.testing.assert_array_equal(ms.history_types.numpy(), again.history_types.numpy())
    # And the batch ranking answers each search as `rank_after` on copies does.
    pending = [by_user[u] for u in users]
    ranked = rank_batch(engine, ms, states, pending, excluded, 5, ScenarioOptions())
    reference = rebuilt_rank_batch(engine, ms, states, pending, excluded, 5, ScenarioOptions())
    assert len(ranked.searches) == len(reference.searches) > 0
    for (i, s, (items, scores)), (j, r, (items_ref, scores_ref)) in zip(
        ranked.searches, reference.searches, strict=True
    ):
        assert (i, s) == (j, r) and items == items_ref and items
        np.testing.assert_allclose(scores, scores_ref, rtol=1e-6)

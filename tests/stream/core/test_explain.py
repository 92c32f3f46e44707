"""Explanations by leave-one-out over the history window, checked where the answer is known."""

from __future__ import annotations

import orjson

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.explain import explain, leave_one_out
from behavior_stream.stream.core.process import process_batch
from behavior_stream.stream.core.scenarios import ScenarioOptions
from behavior_stream.stream.core.state import UserState
from behavior_stream.stream.core.trending import TrendingWindow
from tests.corekit import as_input_records, core_context
from tests.scenariokit import engine_of, repeat_only_model

T = 1_700_000_000_000


def _user_with(engine: ModelEngine, clicks: list[str]) -> UserState:
    st = engine.fresh_state()
    events = [make_event("u", EventType.CLICK, T + i, item) for i, item in enumerate(clicks)]
    engine.step_users([st], [events], [-1])
    st.last_ts = events[-1].ts
    return st


def test_an_item_recommended_only_because_of_one_event_names_that_event() -> None:
    engine = engine_of(repeat_only_model())
    st = _user_with(engine, ["i3", "i5", "i7", "i5"])
    [(items, scores, _)] = engine.recommend([st], [set()], 3, TrendingWindow())
    assert engine.vocab.lookup(items)[0] == "i5" and scores[0] == 2.0  # twice in the window
    assert set(engine.vocab.lookup(items)[1:]) == {"i3", "i7"} and scores[1:] == [1.0, 1.0]
    i3, i5, i12 = (engine.vocab.items.index(x) for x in ("i3", "i5", "i12"))
    reasons = explain(engine, st, [i3, i5, i12])
    # i3 is there only because of the click on i3, three events ago: exactly that event, weight 1.
    assert reasons[0] == [{"item_id": "i3", "type": "click", "events_ago": 3, "weight": 1.0}]
    # i5 was clicked twice: both clicks are named, and nothing else.
    assert sorted(r["events_ago"] for r in reasons[1]) == [0, 2]
    assert all(r["item_id"] == "i5" and r["weight"] == 1.0 for r in reasons[1])
    # An item no event drove has no reasons.
    assert reasons[2] == []


def test_leave_one_out_shape_and_single_event_window() -> None:
    engine = engine_of(repeat_only_model())
    st = _user_with(engine, ["i9"])
    drops = leave_one_out(engine, st, [engine.vocab.items.index("i9"), engine.vocab.items.index("i1")])
    assert drops.shape == (1, 2)
    assert drops.tolist() == [[1.0, 0.0]]  # without its only event the user is fresh


def test_stream_records_carry_explanations_when_asked() -> None:
    engine = engine_of(repeat_only_model())
    ctx = core_context(
        engine, top_k=2, exclude=(), scenarios=ScenarioOptions(search=True, cart=False, explain=True)
    )
    events = [
        make_event("u", EventType.CLICK, T, "i4"),
        make_event("u", EventType.CLICK, T + 1, "i4"),
        make_event("u", EventType.CLICK, T + 2, "i8"),
        make_event("u", EventType.SEARCH, T + 3, query="lamp"),
    ]
    result = process_batch(as_input_records(events), ctx)
    recs = [orjson.loads(m.value) for m in result.messages if m.topic == "recs"]
    feed, search = recs
    assert "scenario" not in feed and search["scenario"] == "search" and search["query"] == "lamp"
    assert [i["item_id"] for i in feed["items"]] == ["i4", "i8"]
    assert sorted(r["events_ago"] for r in feed["items"][0]["because"]) == [2, 3]
    assert feed["items"][1]["because"] == [{"item_id": "i8", "type": "click", "events_ago": 1, "weight": 1.0}]
    assert search["items"] == feed["items"]  # the search was the last event: same state, same policy

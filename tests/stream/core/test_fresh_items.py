"""Fresh items without a broker: the co-visitation rule, its bounds, and feeds from `process_batch`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.schema.sessions import SESSION_GAP_MS
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.fresh_items import (
    FreshItems,
    excluded_fresh,
    last_known_in_session,
    reserve,
    trending_fresh,
)
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.trending import TrendingWindow
from tests.corekit import core_context
from tests.streamkit import make_checkpoint

KNOWN = [f"i{n}" for n in range(30)]
VOCAB = ItemVocab(tuple(KNOWN), n_oov_buckets=8)
T0 = 1_700_000_000_000
HOUR = 3_600_000
CLICK = EventType.CLICK


def ev(user: str, item: str | None, ts: int, type_: EventType = CLICK, session: str | None = None) -> Event:
    if item is None:
        return make_event(user, EventType.SEARCH, ts, query="shoes", session_id=session)
    return make_event(user, type_, ts, item, session_id=session)


def scores_of(table: FreshItems, recent: list[str]) -> dict[str, float]:
    return dict(table.covisited(VOCAB, recent))


def test_unknown_item_after_known_one_in_a_session_is_counted() -> None:
    table = FreshItems()
    table.observe(
        VOCAB, [ev("u", "i1", T0), ev("u", None, T0 + 1), ev("u", "X", T0 + 2)], None, SESSION_GAP_MS
    )
    # The search between them keeps the session's anchor; the anchor is the item just before.
    assert scores_of(table, ["i1"]) == pytest.approx({"X": 1.0})
    assert scores_of(table, ["i2"]) == {}


def test_no_covisit_across_a_session_boundary() -> None:
    table = FreshItems()
    gap = [ev("u", "i1", T0), ev("u", "X", T0 + SESSION_GAP_MS + 1)]
    other_id = [ev("v", "i1", T0, session="s1"), ev("v", "Y", T0 + 5, session="s2")]
    table.observe(VOCAB, gap, None, SESSION_GAP_MS)
    table.observe(VOCAB, other_id, None, SESSION_GAP_MS)
    assert len(table) == 0
    # The same rule against the previous batch's last event: same session, then a gap.
    table.observe(VOCAB, [ev("w", "Z", T0 + 10)], (T0, "", "i3"), SESSION_GAP_MS)
    table.observe(VOCAB, [ev("w", "Q", T0 + SESSION_GAP_MS + 10)], (T0, "", "i3"), SESSION_GAP_MS)
    assert scores_of(table, ["i3"]) == pytest.approx({"Z": 1.0})


def test_the_nearest_known_item_is_the_anchor_and_unknown_items_are_not() -> None:
    table = FreshItems()
    events = [ev("u", "i1", T0), ev("u", "i2", T0 + 1), ev("u", "X", T0 + 2), ev("u", "Y", T0 + 3)]
    table.observe(VOCAB, events, None, SESSION_GAP_MS)
    assert scores_of(table, ["i1"]) == {}
    assert scores_of(table, ["i2"]) == pytest.approx({"X": 1.0, "Y": 1.0})  # Y's anchor is still i2, not X


def test_counts_decay_by_event_time() -> None:
    table = FreshItems(half_life_ms=HOUR)
    table.add("X", "i1", T0)
    table.add("X", "i1", T0)
    table.add("Y", "i1", T0 + HOUR)  # moves the table's clock one half-life on
    got = scores_of(table, ["i1"])
    assert got["X"] == pytest.approx(1.0)
    assert got["Y"] == pytest.approx(1.0)
    table.add("Y", "i1", T0 + 10 * HOUR)
    assert "X" not in scores_of(table, ["i1"])  # below the pruning weight after 10 half-lives


def test_the_table_is_bounded() -> None:
    table = FreshItems(max_items=3, max_anchors=2)
    for n, item in enumerate(["A", "B", "C", "D"]):
        table.add(item, "i1", T0 + n)
    assert len(table) == 3 and set(scores_of(table, ["i1"])) == {"B", "C", "D"}  # least recent gone
    table.add("B", "i1", T0 + 10)
    table.add("B", "i2", T0 + 10)
    table.add("B", "i3", T0 + 11)  # a third anchor: the weakest one (i2) is dropped
    assert set(scores_of(table, ["i2"])) == set()
    assert set(scores_of(table, ["i1", "i3"])) == {"B", "C", "D"}


def test_pick_covisited_first_then_trending_never_known_or_excluded() -> None:
    table = FreshItems()
    for _ in range(3):
        table.add("X", "i1", T0)
    table.add("Y", "i1", T0)
    table.add("i5", "i1", T0)  # known to this vocabulary: the model ranks it, never fresh
    trending = TrendingWindow()
    trending.add([ev("t", item, T0) for item in ["i2", "i2", "i2", "T", "T", "X", "E"]])
    trend = trending_fresh(VOCAB, trending, 3)
    assert [item for item, _ in trend] == ["T", "E", "X"] or [item for item, _ in trend] == ["T", "X", "E"]
    picked = table.pick(VOCAB, ["i1"], {"Y"}, 3, trend)
    assert [item for item, _ in picked] == ["X", "T", "E"]
    assert picked[0][1] == pytest.approx(3.0) and picked[1][1] == 2.0
    assert table.pick(VOCAB, ["i1"], set(), 0, trend) == []


def test_policy_and_window_helpers() -> None:
    events = [ev("u", "X", T0, EventType.ADD_TO_CART), ev("u", "Y", T0, EventType.PURCHASE), ev("u", "Z", T0)]
    assert excluded_fresh(("purchased",), events) == {"Y"}
    assert excluded_fresh(("carted", "purchased"), events) == {"X", "Y"}
    assert excluded_fresh(("recent",), events) == {"X", "Y", "Z"}
    history = np.array([3, -1, 7, -1, -1], np.int32)
    assert last_known_in_session(VOCAB, history, 3) == "i7"
    assert last_known_in_session(VOCAB, history, 2) is None  # i7 is before the session
    assert last_known_in_session(VOCAB, history, 0) is None
    assert reserve([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], [("X", 1.0)], 4) == ([1, 2, 3], [4.0, 3.0, 2.0])
    assert reserve([1, 2], [4.0, 3.0], [("X", 1.0)], 4) == ([1, 2], [4.0, 3.0])


# -- through the processing core ---------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> ModelEngine:
    return ModelEngine.from_checkpoint(make_checkpoint(tmp_path_factory.mktemp("fresh") / "m.pt", KNOWN, 3))


def make_ctx(engine: ModelEngine, fresh_slots: int, exclude: tuple = ("purchased",)) -> StreamContext:
    return core_context(engine, exclude=exclude, fresh_slots=fresh_slots)


class Feeder:
    """Feeds events to `process_batch` with increasing offsets; returns each user's last feed."""

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx, self.offset = ctx, 0

    def __call__(self, events: list[Event]) -> dict[str, list[dict]]:
        records = []
        for e in events:
            records.append(InputRecord("events", 0, self.offset, e.user_id.encode(), e.to_json(), 0.0))
            self.offset += 1
        result = process_batch(records, self.ctx)
        feeds = [orjson.loads(m.value) for m in result.messages if m.topic == "recs"]
        return {f["user_id"]: f["items"] for f in feeds}


def test_feed_reserves_the_last_places_for_covisited_fresh_items(engine: ModelEngine) -> None:
    feed = Feeder(make_ctx(engine, fresh_slots=2))
    # Other users view i1 then the new item X (three times) and i2 then Y (once).
    feed([ev(f"a{n}", "i1", T0 + n) for n in range(3)] + [ev(f"a{n}", "X", T0 + 10 + n) for n in range(3)])
    feed([ev("b", "i2", T0 + 20), ev("b", "Y", T0 + 21)])
    items = feed([ev("u", "i1", T0 + 30), ev("u", "i2", T0 + 31)])["u"]
    assert len(items) == 10
    assert [e["item_id"] for e in items[-2:]] == ["X", "Y"]
    assert [e.get("fresh") for e in items[-2:]] == [True, True]
    assert [e["score"] for e in items[-2:]] == pytest.approx([3.0, 1.0], abs=1e-4)  # decayed by ms
    assert all("fresh" not in e and e["item_id"] in KNOWN for e in items[:-2])


def test_purchased_fresh_item_stays_out_and_zero_slots_turns_it_off(engine: ModelEngine) -> None:
    feed = Feeder(make_ctx(engine, fresh_slots=2))
    feed([ev("a", "i1", T0), ev("a", "X", T0 + 1)])
    items = feed([ev("u", "i1", T0 + 5), ev("u", "X", T0 + 6, EventType.PURCHASE)])["u"]
    assert "X" not in [e["item_id"] for e in items]
    off = Feeder(make_ctx(engine, fresh_slots=0))
    off([ev("a", "i1", T0), ev("a", "X", T0 + 1)])
    items = off([ev("u", "i1", T0 + 5)])["u"]
    assert len(items) == 10 and all("fresh" not in e and e["item_id"] in KNOWN for e in items)


def test_cold_user_gets_trending_fresh_items_last(engine: ModelEngine) -> None:
    feed = Feeder(make_ctx(engine, fresh_slots=1))
    feed([ev(f"a{n}", "i4", T0 + n) for n in range(5)] + [ev(f"b{n}", "NEW", T0 + n) for n in range(4)])
    items = feed([ev("cold", None, T0 + 9)])["cold"]  # only a search: no catalog item yet
    assert items[0]["item_id"] == "i4" and items[-1] == {"item_id": "NEW", "score": 4.0, "fresh": True}


def test_an_item_the_model_knows_is_never_fresh(engine: ModelEngine, tmp_path: Path) -> None:
    grown = ModelEngine.from_checkpoint(make_checkpoint(tmp_path / "grown.pt", [*KNOWN, "X"], 4))
    ctx = make_ctx(engine, fresh_slots=2)
    feed = Feeder(ctx)
    feed([ev("a", "i1", T0), ev("a", "X", T0 + 1)])
    assert feed([ev("u", "i1", T0 + 5)])["u"][-1] == {"item_id": "X", "score": 1.0, "fresh": True}
    ctx.engine = grown  # what a hot reload does between batches
    items = feed([ev("u", "i1", T0 + 6)])["u"]
    assert all("fresh" not in e for e in items)


def test_trending_fallback_is_cached_per_vocabulary() -> None:
    window = TrendingWindow()
    window.add([ev("t", "A", T0)])
    table = FreshItems(trending_refresh_s=3600.0)
    first = table.trending(VOCAB, window, 2)
    window.add([ev("t", "B", T0), ev("t", "B", T0)])
    assert table.trending(VOCAB, window, 2) == first == [("A", 1.0)]  # within the refresh period
    assert table.trending(ItemVocab(("i0",), 8), window, 2) == [("B", 2.0), ("A", 1.0)]  # another model
    assert FreshItems(trending_refresh_s=0.0).trending(VOCAB, window, 2) == [("B", 2.0), ("A", 1.0)]

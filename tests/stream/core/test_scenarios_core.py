"""Search, cart completion, related items and purchase intent in the processing core (no broker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.intent import purchase_intents
from behavior_stream.stream.core.lookahead import clone_state
from behavior_stream.stream.core.process import process_batch
from behavior_stream.stream.core.related import related_items
from behavior_stream.stream.core.scenarios import ScenarioOptions, cart_feeds
from behavior_stream.stream.core.search import search_event, search_rankings
from behavior_stream.stream.core.state import UserState, encode_state
from tests.corekit import as_input_records, core_context
from tests.scenariokit import ITEMS, random_checkpoint

T = 1_700_000_000_000
TABLE = {"top_n": 20, "pairs": {"i1": [["i2", 5], ["i9", 1]], "i2": [["i1", 5]]}}
CALIBRATION = {"method": "platt", "a": 0.5, "b": -1.0, "n": 100, "positives": 20, "threshold": 0.3}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> ModelEngine:
    path = tmp_path_factory.mktemp("scen") / "m.pt"
    meta = {"bought_together": TABLE, "purchase_calibration": CALIBRATION}
    return ModelEngine.from_checkpoint(random_checkpoint(path, meta), ann_threshold=0)


@pytest.fixture(scope="module")
def old_engine(tmp_path_factory: pytest.TempPathFactory) -> ModelEngine:
    return ModelEngine.from_checkpoint(random_checkpoint(tmp_path_factory.mktemp("old") / "m.pt", {}), 0)


def user(engine: ModelEngine, events: list) -> UserState:
    st = engine.fresh_state()
    engine.step_users([st], [events], [-1])
    st.last_ts = events[-1].ts
    st.carted = [
        i
        for e in events
        if e.type is EventType.ADD_TO_CART and (i := engine.vocab.index(e.item_id)) is not None
    ]
    return st


def clicks(*items: str) -> list:
    return [make_event("u", EventType.CLICK, T + i, it) for i, it in enumerate(items)]


def test_search_ranks_from_a_stepped_copy_and_never_changes_the_state(engine: ModelEngine) -> None:
    st = user(engine, clicks("i1", "i4"))
    before = encode_state(st)
    [(items, scores)] = search_rankings(engine, ["u"], [st], ["red lamp"], [set()], 5)
    assert encode_state(st) == before
    # The same ranking as stepping the search for real and scoring the catalog.
    real = clone_state(st)
    engine.step_users([real], [[search_event("u", st, "red lamp")]], [st.last_ts])
    ms = engine.model_state([real])
    want = torch.topk(engine.model.scores(ms)[0].detach(), 5)
    assert items == want.indices.tolist()
    np.testing.assert_allclose(scores, want.values.numpy(), rtol=1e-5)
    # Another query, another ranking (the query encoder is an input).
    [(other, _)] = search_rankings(engine, ["u"], [st], ["garden hose"], [set()], 5)
    assert other != items


def test_search_reranks_only_the_candidates(engine: ModelEngine) -> None:
    st = user(engine, clicks("i1"))
    pool = [engine.vocab.items.index(x) for x in ("i7", "i3", "i30", "i3")]
    [(items, scores)] = search_rankings(engine, ["u"], [st], ["lamp"], [set()], 10, [pool])
    assert sorted(items) == sorted(set(pool))
    assert scores == sorted(scores, reverse=True)


def test_cart_completes_with_bought_together_and_never_the_carted_item(engine: ModelEngine) -> None:
    st = user(engine, [*clicks("i5"), make_event("u", EventType.ADD_TO_CART, T + 9, "i1")])
    [(items, scores)] = cart_feeds(engine, [st], [set()], 5, 0.5)
    names = engine.vocab.lookup(items)
    assert names[:2] == ["i2", "i9"]  # 5/6 and 1/6 of the table's half beat a near-uniform softmax
    assert "i1" not in names and len(names) == 5
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_cart_without_a_table_is_the_model_alone(old_engine: ModelEngine) -> None:
    st = user(old_engine, [make_event("u", EventType.ADD_TO_CART, T, "i1")])
    [(items, _)] = cart_feeds(old_engine, [st], [set()], len(ITEMS), 0.5)
    assert old_engine.vocab.index("i1") not in items and len(items) == len(ITEMS) - 1
    ms = old_engine.model_state([st])
    order = torch.argsort(old_engine.model.scores(ms)[0], descending=True).tolist()
    assert items == [i for i in order if i != old_engine.vocab.index("i1")]


def test_related_is_the_ranking_after_a_view_of_the_item(engine: ModelEngine) -> None:
    idx = engine.vocab.index("i6")
    assert idx is not None
    items, _ = related_items(engine, idx, 10)
    assert idx not in items and len(items) == 10
    fresh = user(engine, [make_event("anonymous", EventType.CLICK, 0, "i6")])
    order = torch.argsort(engine.model.scores(engine.model_state([fresh]))[0], descending=True).tolist()
    assert items == [i for i in order if i != idx][:10]
    st = user(engine, clicks("i20", "i21", "i22"))
    personal, _ = related_items(engine, idx, 10, ("u", st))
    assert idx not in personal and personal != items


def test_related_through_hnsw_matches_exact(tmp_path: Path) -> None:
    items = [f"p{i}" for i in range(300)]
    path = random_checkpoint(tmp_path / "big.pt", {}, items)
    exact, approx = ModelEngine.from_checkpoint(path, 0), ModelEngine.from_checkpoint(path, 100)
    assert approx.index.approximate and not exact.index.approximate
    got = [related_items(approx, i, 10)[0] for i in range(0, 300, 30)]
    want = [related_items(exact, i, 10)[0] for i in range(0, 300, 30)]
    overlap = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert overlap >= 0.9


def test_purchase_intent_is_calibrated_when_the_checkpoint_says_how(
    engine: ModelEngine, old_engine: ModelEngine
) -> None:
    st = user(engine, clicks("i1", "i2"))
    [intent] = purchase_intents(engine, [st])
    raw = float(engine.model.purchase_probability(engine.model_state([st]))[0].detach())
    want = 1 / (1 + np.exp(-(0.5 * np.log(raw / (1 - raw)) - 1.0)))
    assert intent.calibration == "platt" and intent.probability == pytest.approx(want, abs=1e-5)
    [plain] = purchase_intents(old_engine, [user(old_engine, clicks("i1"))])
    assert plain.calibration == "none" and 0 < plain.probability < 1


def test_stream_emits_search_and_cart_records_beside_the_feed(engine: ModelEngine) -> None:
    ctx = core_context(engine, scenarios=ScenarioOptions(), top_k=5)
    events = [
        make_event("s", EventType.CLICK, T, "i3"),
        make_event("s", EventType.SEARCH, T + 1, query="desk lamp"),
        make_event("s", EventType.CLICK, T + 2, "i4"),  # the search is answered from a copy
        make_event("c", EventType.CLICK, T, "i7"),
        make_event("c", EventType.ADD_TO_CART, T + 1, "i1"),
        make_event("p", EventType.CLICK, T, "i8"),
    ]
    result = process_batch(as_input_records(events), ctx)
    recs = [orjson.loads(m.value) for m in result.messages if m.topic == "recs"]
    reps = [orjson.loads(m.value) for m in result.messages if m.topic == "reps"]
    scenario = {(r["user_id"], r.get("scenario")) for r in recs}
    assert scenario == {("s", None), ("c", None), ("p", None), ("s", "search"), ("c", "cart")}
    search = next(r for r in recs if r.get("scenario") == "search")
    assert (
        search["query"] == "desk lamp"
        and search["event_id"] == events[1].event_id
        and len(search["items"]) == 5
    )
    cart = next(r for r in recs if r.get("scenario") == "cart")
    assert cart["event_id"] == events[4].event_id and cart["query"] is None
    assert [i["item_id"] for i in cart["items"][:2]] == ["i2", "i9"] and "i1" not in {
        i["item_id"] for i in cart["items"]
    }
    assert all(r["purchase_calibration"] == "platt" and 0 < r["purchase_probability"] < 1 for r in reps)
    assert len(result.stats.intents) == 3

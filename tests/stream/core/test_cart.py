"""Cart completion: the blend of the model's softmax and the basket's partner shares, what is left out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from behavior_stream.schema.events import EventType, make_event
from behavior_stream.stream.core.cart import BoughtTogether, cart_rankings
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.scenarios import cart_feeds
from behavior_stream.stream.core.state import UserState
from tests.scenariokit import ITEMS, random_checkpoint
from tests.streamkit import make_checkpoint

T = 1_700_000_000_000
# Partners for a third of the catalog (i0, i3, ...); i4 and i5 are each other's only ones, so a
# basket of both has partners that are all left out; i1 has none.
PAIRS = {
    f"i{i}": [[f"i{(i * 7 + j) % 40}", 1 + (i + j) % 5] for j in range(1, 6)] for i in range(0, 40, 3)
} | {"i4": [["i5", 2]], "i5": [["i4", 1]]}


META = {"bought_together": {"top_n": 5, "pairs": PAIRS}}


@pytest.fixture(scope="module", params=["plain", "rules"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModelEngine:
    path = tmp_path_factory.mktemp("cart") / "m.pt"
    if request.param == "plain":
        made = random_checkpoint(path, META, seed=11)
    else:  # sequential rules fitted on random walks: their term is part of every score
        made = make_checkpoint(path, ITEMS, seed=5, rules_weight=0.7, metadata=META)
    return ModelEngine.from_checkpoint(made, ann_threshold=0)


def shopper(engine: ModelEngine, seed: int) -> UserState:
    """A user with a few clicks and carts drawn from `seed`."""
    rng = np.random.default_rng(seed)
    kinds = [EventType.CLICK, EventType.CLICK, EventType.ADD_TO_CART]
    events = [
        make_event("u", kinds[int(rng.integers(3))], T + i, ITEMS[int(rng.integers(40))])
        for i in range(int(rng.integers(2, 12)))
    ]
    st = engine.fresh_state()
    engine.step_users([st], [events], [-1])
    st.carted = [index(engine, e.item_id) for e in events if e.type is EventType.ADD_TO_CART]
    return st


def index(engine: ModelEngine, item: str | None) -> int:
    found = engine.vocab.index(item)
    assert found is not None
    return found


def test_a_short_catalog_gives_what_is_left_and_never_a_left_out_item(engine: ModelEngine) -> None:
    st = shopper(engine, 5)
    excluded = [set(range(30))]
    [(items, scores)] = cart_feeds(engine, [st], excluded, 40, 0.5)
    assert not set(items) & (set(range(30)) | set(st.carted))
    assert len(items) == 40 - len(set(range(30)) | set(st.carted))
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_a_partner_left_out_still_counts_in_the_shares(engine: ModelEngine) -> None:
    table = BoughtTogether({0: (np.array([1, 2]), np.array([3.0, 1.0]))})
    st = shopper(engine, 1)
    st.carted = [0]
    ms = engine.model_state([st])
    top = engine.model.representation(ms)
    [(items, scores)] = cart_rankings(
        engine.model, top, ms.history, ms.history_types, table, [[0]], [{1}], 3, 0.8
    )
    assert 1 not in items and items[0] == 2  # item 2's share is 1 / 4, not 1 / 1
    with torch.inference_mode():
        p = torch.softmax(engine.model.scores(ms)[0], 0)
    assert scores[0] == pytest.approx(0.2 * float(p[2]) + 0.8 * 0.25, rel=1e-5)


def test_a_basket_whose_partners_are_all_left_out_still_blends(engine: ModelEngine) -> None:
    st = shopper(engine, 2)
    st.carted = [index(engine, "i4"), index(engine, "i5")]  # each other's only partners
    [(items, scores)] = cart_feeds(engine, [st], [set()], 5, 0.5)
    ms = engine.model_state([st])
    with torch.inference_mode():
        p = torch.softmax(engine.model.scores(ms)[0], 0)
    assert not {index(engine, "i4"), index(engine, "i5")} & set(items)
    np.testing.assert_allclose(scores, 0.5 * p[items].numpy(), rtol=1e-5)  # the model's half, no share


def test_without_partners_the_feed_is_the_softmax_alone(engine: ModelEngine) -> None:
    st = shopper(engine, 3)
    st.carted = [index(engine, "i1")]  # i1 has no partners in PAIRS
    [(items, scores)] = cart_feeds(engine, [st], [set()], 5, 0.5)
    with torch.inference_mode():
        p = torch.softmax(engine.model.scores(engine.model_state([st]))[0], 0)
    p = p.clone()  # an inference tensor cannot be written outside inference mode
    p[index(engine, "i1")] = -1
    best = torch.topk(p, 5)
    assert items == best.indices.tolist()
    np.testing.assert_allclose(scores, best.values.numpy(), rtol=1e-6)

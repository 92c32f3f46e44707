"""Tests of simulated sessions: openings, the browse along a price listing, carts and purchases."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.simulate.catalog import build_catalog
from behavior_stream.simulate.shoppers import Behavior, SessionSimulator, Uniforms

CLICK, SEARCH = TYPE_INDEX[EventType.CLICK], TYPE_INDEX[EventType.SEARCH]
CART, PURCHASE = TYPE_INDEX[EventType.ADD_TO_CART], TYPE_INDEX[EventType.PURCHASE]


def test_uniforms_are_reproducible_across_blocks() -> None:
    a, b = Uniforms(np.random.default_rng(4), block=7), Uniforms(np.random.default_rng(4), block=7)
    draws = [a() for _ in range(30)]
    assert draws == [b() for _ in range(30)] and all(0.0 <= x < 1.0 for x in draws)


def test_plain_browsing_walks_one_listing_in_steps_of_the_window() -> None:
    """Without carts, repeats, detours or returns, a session is an opening and moves of at most
    `window` places along one category's price listing."""
    quiet = Behavior(
        cart=0, favorite=0, repeat=0, distract=0, switch=0, refine=0, return_cart=0, return_view=0
    )
    catalog = build_catalog(np.random.default_rng(5), 400, 4)
    sim = SessionSimulator(np.random.default_rng(6), catalog, quiet)
    shopper = sim.new_shopper()
    for _ in range(50):
        steps = sim.session(shopper)
        clicks = [item for kind, item, _ in steps if kind == CLICK]
        assert steps[0][0] in (CLICK, SEARCH) and all(k in (CLICK, SEARCH) for k, _, _ in steps)
        assert len({int(catalog.category_of[i]) for i in clicks}) == 1
        ranks = catalog.rank_in_category[clicks]
        assert (np.abs(np.diff(ranks)) <= quiet.window).all()


def test_carts_follow_their_click_and_purchases_empty_the_cart() -> None:
    catalog = build_catalog(np.random.default_rng(7), 300, 3)
    sim = SessionSimulator(np.random.default_rng(8), catalog, Behavior(cart=0.3, checkout=1.0))
    shopper = sim.new_shopper()
    bought = 0
    for _ in range(40):
        carted_before = set(shopper.cart)
        steps = sim.session(shopper)
        for (prev_kind, prev_item, _), (kind, item, _) in pairwise(steps):
            if kind == CART:
                assert prev_kind == CLICK and prev_item == item
        carted = carted_before | {item for kind, item, _ in steps if kind == CART}
        purchases = [item for kind, item, _ in steps if kind == PURCHASE]
        assert set(purchases) <= carted and not set(purchases) & set(shopper.cart)
        bought += len(purchases)
        assert len(shopper.cart) <= 8 and len(shopper.recent) <= 30
    assert bought > 0


def test_searches_carry_a_query_and_land_in_their_category() -> None:
    catalog = build_catalog(np.random.default_rng(9), 300, 5)
    sim = SessionSimulator(np.random.default_rng(10), catalog, Behavior(search_first=1.0, return_cart=0))
    shopper = sim.new_shopper()
    for _ in range(30):
        steps = sim.session(shopper)
        for (kind, item, query), (next_kind, next_item, _) in pairwise(steps):
            assert (query is not None) == (kind == SEARCH)
            if kind == SEARCH:
                assert item == -1 and next_kind == CLICK and query
                words = catalog.categories[int(catalog.category_of[next_item])].words
                assert set(query.split()) & set(words)

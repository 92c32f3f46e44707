"""Tests of the simulated catalog: category words, item names, popularity and price listings."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.simulate.catalog import (
    BASE_CATEGORIES,
    GENERIC_WORDS,
    HIGH_PRICE_WORDS,
    LINES,
    LOW_PRICE_WORDS,
    MAX_CATEGORIES,
    POPULARITY_EXPONENT,
    POPULARITY_OFFSET,
    STYLE_NAMES,
    STYLES,
    build_catalog,
    default_categories,
    listing_neighbors,
    make_categories,
)


def test_base_category_words_are_unique_and_lines_extend_them() -> None:
    words = [w for _, ws in BASE_CATEGORIES for w in ws]
    assert len(words) == len(set(words))
    extra = {*GENERIC_WORDS, *LOW_PRICE_WORDS, *HIGH_PRICE_WORDS, *LINES, *(c for s in STYLES for c in s)}
    assert not extra & set(words)  # a query's category words are unambiguous
    categories = make_categories(MAX_CATEGORIES)
    assert len({c.name for c in categories}) == MAX_CATEGORIES
    extended = categories[len(BASE_CATEGORIES)]
    assert extended.name == f"{LINES[0]} {BASE_CATEGORIES[0][0]}" and LINES[0] in extended.words
    for bad in (0, MAX_CATEGORIES + 1):
        with pytest.raises(ValueError, match="categories must be in"):
            make_categories(bad)
    assert default_categories(10) == 1 and default_categories(2_000) == 16
    assert default_categories(10**7) == MAX_CATEGORIES


def test_catalog_items_are_consistent() -> None:
    catalog = build_catalog(np.random.default_rng(0), 500, 7)
    n = catalog.n_items
    assert n == 500 and len(set(catalog.item_ids)) == n and len(set(catalog.names)) == n
    assert sorted(np.concatenate(catalog.by_price).tolist()) == list(range(n))
    expected = (np.arange(1, n + 1) + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    np.testing.assert_allclose(np.sort(catalog.popularity)[::-1], expected / expected.sum())
    np.testing.assert_allclose(catalog.category_weights().sum(), 1.0)
    for c, members in enumerate(catalog.by_price):
        assert len(members) >= 1 and (catalog.category_of[members] == c).all()
        assert (np.diff(catalog.price[members]) > 0).all() or len(members) == 1
        assert (catalog.rank_in_category[members] == np.arange(len(members))).all()
    for i in range(n):
        color = catalog.names[i].split()[0]
        assert color in STYLES[int(catalog.style[i])]
        assert catalog.categories[int(catalog.category_of[i])].name in catalog.names[i]
    rows = catalog.records()
    assert rows[3]["item_id"] == catalog.item_ids[3] and rows[3]["name"] == catalog.names[3]
    assert rows[3]["style"] == STYLE_NAMES[int(catalog.style[3])]


def test_too_few_items_for_the_categories_is_an_error() -> None:
    with pytest.raises(ValueError, match="items=3 < categories=4"):
        build_catalog(np.random.default_rng(0), 3, 4)


def test_listing_neighbors_follow_the_price_order() -> None:
    catalog = build_catalog(np.random.default_rng(1), 200, 3)
    window = 5
    cand, weight = listing_neighbors(catalog, window, 0.5, 0.0)  # power 0: popularity ignored
    members = catalog.by_price[0]
    m = len(members)
    for pos in (0, m // 2, m - 1):
        item = members[pos]
        up = list(range(pos + 1, pos + window + 1))
        down = list(range(pos - 1, pos - window - 1, -1))
        for di, positions in enumerate((up, down)):
            inside = [0 <= p < m for p in positions]
            assert cand[item, di][inside].tolist() == [members[p] for p in positions if 0 <= p < m]
            np.testing.assert_allclose(weight[item, di], np.where(inside, 0.5 ** np.arange(window), 0.0))

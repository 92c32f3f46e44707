"""Tests of the synthetic event generator: determinism, validity, realism and sequence signal."""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pytest

from behavior_stream.schema.events import MAX_TS_MS, Event, EventType, parse_event, validate_event
from behavior_stream.simulate.catalog import (
    GENERIC_WORDS,
    HIGH_PRICE_WORDS,
    LOW_PRICE_WORDS,
    STYLES,
    make_categories,
)
from behavior_stream.simulate.generator import (
    DEFAULT_START_MS,
    SPAN_DAYS,
    GeneratedData,
    catalog_path_for,
    generate,
    read_catalog,
)

USERS, ITEMS, EVENTS, SEED = 600, 1_000, 30_000, 11
SESSION_GAP_MS = 30 * 60_000


@pytest.fixture(scope="module")
def data() -> GeneratedData:
    return generate(USERS, ITEMS, EVENTS, SEED)


@pytest.fixture(scope="module")
def sessions(data: GeneratedData) -> list[list[Event]]:
    by_id: dict[str, list[Event]] = defaultdict(list)
    for e in data.events:
        assert e.session_id is not None
        by_id[e.session_id].append(e)
    return list(by_id.values())


def _by_user(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        out[e.user_id].append(e)
    return out


def test_same_seed_gives_same_events_and_other_seed_differs() -> None:
    first = generate(100, 200, 3_000, seed=5)
    assert generate(100, 200, 3_000, seed=5).events == first.events
    assert generate(100, 200, 3_000, seed=6).events != first.events


@pytest.mark.parametrize(
    ("users", "items", "events"), [(1, 1, 50), (5, 10, 0), (50, 200, 1_234), (300, 40, 5_000)]
)
def test_exact_event_count(users: int, items: int, events: int) -> None:
    data = generate(users, items, events, seed=1)
    assert len(data.events) == data.stats.events == events
    assert sum(data.stats.type_counts.values()) == events
    assert data.stats.users <= users and len(data.item_names) == items


def test_file_bytes_are_deterministic_and_match_memory(tmp_path: Path, data: GeneratedData) -> None:
    paths = [tmp_path / "a" / "events.jsonl.gz", tmp_path / "b" / "events.jsonl.gz"]
    results = [generate(USERS, ITEMS, EVENTS, SEED, path) for path in paths]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert results[0].events == [] and results[0].path == paths[0]
    lines = gzip.decompress(paths[0].read_bytes()).splitlines()
    assert [parse_event(line) for line in lines] == data.events
    sidecar = results[0].catalog_path
    assert (
        sidecar == tmp_path / "a" / "events.items.json"
        and sidecar.read_bytes() == catalog_path_for(paths[1]).read_bytes()
    )
    rows = read_catalog(sidecar)
    assert {r["item_id"]: r["name"] for r in rows} == data.item_names
    assert {r["item_id"]: r["category"] for r in rows} == data.item_categories
    plain = tmp_path / "events.jsonl"
    generate(USERS, ITEMS, 500, SEED, plain)
    assert plain.read_bytes()[:1] == b"{" and len(plain.read_bytes().splitlines()) == 500


def test_every_event_is_valid(data: GeneratedData) -> None:
    assert all(validate_event(e.to_dict()) == e for e in data.events)
    assert len({e.event_id for e in data.events}) == len(data.events)


def test_events_are_in_time_order(data: GeneratedData) -> None:
    ts = np.array([e.ts for e in data.events])
    assert (np.diff(ts) >= 0).all()
    assert ts[0] >= DEFAULT_START_MS and ts[-1] < DEFAULT_START_MS + 2 * SPAN_DAYS * 86_400_000
    for events in _by_user(data.events).values():
        assert all(a.ts < b.ts for a, b in pairwise(events))


def test_item_popularity_is_skewed(data: GeneratedData) -> None:
    counts = Counter(e.item_id for e in data.events if e.item_id is not None)
    freq = np.sort(np.array([counts.get(i, 0) for i in data.item_names], dtype=float))  # ascending
    gini = 1.0 - 2.0 * np.sum(np.cumsum(freq)) / (len(freq) * freq.sum()) + 1.0 / len(freq)
    assert gini > 0.3
    top = freq[::-1]
    assert top[: len(top) // 10].sum() / top.sum() > 0.22  # top 10% of items: over twice their share
    # Power-law tail: log frequency falls with log rank between the 5% and 50% rank quantiles.
    ranks = np.arange(len(top) // 20, len(top) // 2)
    slope = np.polyfit(np.log(ranks + 1), np.log(top[ranks]), 1)[0]
    assert slope < -0.4


def test_funnel_rates_and_purchases_follow_carts(data: GeneratedData) -> None:
    share = {t: c / len(data.events) for t, c in data.stats.type_counts.items()}
    assert 0.01 <= share["purchase"] <= 0.05
    assert share["add_to_cart"] > share["purchase"] and share["favorite"] > 0.005
    assert 0.05 <= share["search"] <= 0.2
    for events in _by_user(data.events).values():
        carted: set[str | None] = set()
        for e in events:
            if e.type is EventType.ADD_TO_CART:
                carted.add(e.item_id)
            elif e.type is EventType.PURCHASE:
                assert e.item_id in carted, f"{e} buys an item never carted"


def test_sessions_match_the_30_minute_rule(data: GeneratedData, sessions: list[list[Event]]) -> None:
    gap_sessions = 0
    for events in _by_user(data.events).values():
        gap_sessions += 1 + sum(b.ts - a.ts > SESSION_GAP_MS for a, b in pairwise(events))
        for a, b in pairwise(events):
            assert (b.session_id != a.session_id) == (b.ts - a.ts > SESSION_GAP_MS)
    assert gap_sessions == len(sessions) == data.stats.sessions
    lengths = np.array([len(s) for s in sessions])
    assert np.median(lengths) > 1 and 4 <= lengths.mean() <= 20


def test_queries_name_the_searched_category(data: GeneratedData, sessions: list[list[Event]]) -> None:
    extra = set(GENERIC_WORDS) | set(LOW_PRICE_WORDS) | set(HIGH_PRICE_WORDS) | {c for s in STYLES for c in s}
    words_of = {c.name: set(c.words) for c in make_categories(len(set(data.item_categories.values())))}
    checked = 0
    for e in data.events:
        assert (e.query is not None) == (e.type is EventType.SEARCH)
        assert (e.item_id is None) == (e.type is EventType.SEARCH)
    for events in sessions:
        for search, landing in pairwise(events):
            if search.type is EventType.SEARCH:
                assert search.query is not None and landing.item_id is not None
                vocab = words_of[data.item_categories[landing.item_id]]
                words = search.query.split()
                assert 1 <= len(words) <= 5 and set(words) <= vocab | extra, search.query
                assert set(words) & vocab, f"{search.query!r} names no word of its category"
                checked += 1
    assert checked > 0.05 * len(data.events)


def test_shoppers_revisit_items(data: GeneratedData, sessions: list[list[Event]]) -> None:
    clicks = in_session = 0
    for events in sessions:
        seen: list[str] = []
        for e in events:
            if e.type is EventType.CLICK and e.item_id is not None:
                clicks += 1
                in_session += e.item_id in seen[:-1]
                seen.append(e.item_id)
    assert in_session / clicks > 0.05
    opens_on_old = n_later = 0
    for events in _by_user(data.events).values():
        seen_before: set[str | None] = set()
        for a, b in pairwise(events):
            seen_before.add(a.item_id)
            if b.session_id != a.session_id:
                n_later += 1
                opens_on_old += b.item_id in seen_before
    assert opens_on_old / n_later > 0.1


def test_browsing_order_carries_direction_and_style(sessions: list[list[Event]], data: GeneratedData) -> None:
    """Moves along a category's price order keep their direction, and colors keep their style:
    the item two steps back tells where the next one lies."""
    style_of_color = {color: s for s, colors in enumerate(STYLES) for color in colors}
    style_of = {item: style_of_color[name.split()[0]] for item, name in data.item_names.items()}
    same_direction = moves = same_style = pairs = 0
    for events in sessions:
        clicks = [e.item_id for e in events if e.type is EventType.CLICK and e.item_id is not None]
        for a, b, c in zip(clicks, clicks[1:], clicks[2:], strict=False):
            if len({data.item_categories[i] for i in (a, b, c)}) == 1 and len({a, b, c}) == 3:
                pa, pb, pc = (data.item_prices[i] for i in (a, b, c))
                moves += 1
                same_direction += (pb - pa) * (pc - pb) > 0
        for a, b in pairwise(clicks):
            if a != b and data.item_categories[a] == data.item_categories[b]:
                pairs += 1
                same_style += style_of[a] == style_of[b]
    assert same_direction / moves > 0.7
    assert same_style / pairs > 0.4  # chance is 1/3


def test_sequence_beats_popularity_on_a_time_split(data: GeneratedData) -> None:
    """Next-item Recall@20 on the last 20% of time: popularity is weak, the last item's category
    and first-order transitions are several times better."""
    cut = np.quantile([e.ts for e in data.events], 0.8)
    train = [e for e in data.events if e.ts < cut]
    pop = Counter(e.item_id for e in train if e.item_id is not None)
    top20 = {i for i, _ in pop.most_common(20)}
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    transitions: dict[str, Counter[str]] = defaultdict(Counter)
    for events in _by_user(train).values():
        items = [e.item_id for e in events if e.item_id is not None]
        for a, b in pairwise(items):
            transitions[a][b] += 1
        for i in items:
            by_category[data.item_categories[i]][i] += 1
    hits = Counter[str]()
    n = 0
    for events in _by_user(data.events).values():
        timed = [(e.item_id, e.ts) for e in events if e.item_id is not None]
        for (prev, _), (target, ts) in pairwise(timed):
            if ts < cut:
                continue
            n += 1
            hits["pop"] += target in top20
            cat_top = {i for i, _ in by_category[data.item_categories[prev]].most_common(20)}
            hits["category"] += target in cat_top
            ranked = [i for i, _ in transitions[prev].most_common(20)]
            ranked += [i for i, _ in pop.most_common(40) if i not in ranked][: 20 - len(ranked)]
            hits["markov"] += target in ranked
    recall = {name: h / n for name, h in hits.items()}
    assert recall["pop"] < 0.15
    assert recall["category"] > 2 * recall["pop"]
    assert recall["markov"] > 3 * recall["pop"]


def test_catalog_names_categories_and_explicit_category_count() -> None:
    data = generate(20, 60, 500, seed=3, categories=3)
    assert len(set(data.item_categories.values())) == 3
    for item, name in data.item_names.items():
        assert data.item_categories[item] in name and name.endswith(f"#{int(item[1:])}")
    assert all(p > 0 for p in data.item_prices.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0}, "users"),
        ({"items": 2, "categories": 3}, "at least one item per category"),
        ({"categories": 10_000}, "categories must be in"),
        ({"start_ms": 0}, "start_ms"),
        ({"start_ms": MAX_TS_MS - 1}, "start_ms"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, int], message: str) -> None:
    args: dict[str, int] = {"users": 10, "items": 20, "events": 100, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(**args)  # type: ignore[arg-type]


def test_catalog_path_for_strips_event_suffixes(tmp_path: Path) -> None:
    assert catalog_path_for(tmp_path / "ev.jsonl.gz") == tmp_path / "ev.items.json"
    assert catalog_path_for(tmp_path / "ev.jsonl") == tmp_path / "ev.items.json"
    bad = tmp_path / "bad.items.json"
    bad.write_bytes(orjson.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_catalog(bad)

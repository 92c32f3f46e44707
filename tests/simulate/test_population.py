"""Tests of the simulated population: event budgets, event times and the assembled columns."""

from __future__ import annotations

import numpy as np

from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.simulate.catalog import build_catalog
from behavior_stream.simulate.population import (
    MAX_PAUSE_MS,
    MIN_SESSION_GAP_MS,
    event_budgets,
    simulate,
    timestamps,
)

START = 1_767_571_200_000
SPAN = 10 * 86_400_000


def test_event_budgets_sum_to_the_requested_events() -> None:
    budgets = event_budgets(np.random.default_rng(0), 1_000, 20_000)
    assert budgets.shape == (1_000,) and budgets.sum() == 20_000
    assert budgets.max() > 5 * budgets.mean()  # a few heavy users


def test_timestamps_pause_within_and_gap_between_sessions() -> None:
    rng = np.random.default_rng(2)
    user = np.repeat(np.arange(50), 40)
    session = np.tile(np.repeat(np.arange(8), 5), 50)
    type_ = np.full(len(user), TYPE_INDEX[EventType.CLICK])
    ts = timestamps(rng, user, session, type_, START, SPAN)
    same_user = user[1:] == user[:-1]
    same_session = same_user & (session[1:] == session[:-1])
    dt = np.diff(ts)
    assert (dt[same_session] >= 1_000).all() and (dt[same_session] <= MAX_PAUSE_MS).all()
    assert (dt[same_user & ~same_session] >= MIN_SESSION_GAP_MS).all()
    assert ts.min() >= START
    first = np.r_[True, ~same_user]
    last = np.r_[~same_user, True]
    spans = ts[last] - ts[first]
    assert (spans < SPAN + 8 * MIN_SESSION_GAP_MS).all() and np.median(spans) > SPAN / 2
    assert len(timestamps(rng, user[:0], session[:0], type_[:0], START, SPAN)) == 0


def test_simulate_gives_user_grouped_columns() -> None:
    rng = np.random.default_rng(3)
    catalog = build_catalog(rng, 300, 4)
    sim = simulate(rng, catalog, 80, 5_000, START, SPAN)
    n = len(sim.ts)
    assert n == 5_000 and len(sim.query) == n and sim.item.shape == sim.type_.shape == (n,)
    assert (np.diff(sim.user) >= 0).all()
    same_user = sim.user[1:] == sim.user[:-1]
    assert (np.diff(sim.session)[same_user] >= 0).all() and (np.diff(sim.ts)[same_user] > 0).all()
    is_search = sim.type_ == TYPE_INDEX[EventType.SEARCH]
    assert ((sim.item < 0) == is_search).all()
    assert all((q is not None) == s for q, s in zip(sim.query, is_search.tolist(), strict=True))

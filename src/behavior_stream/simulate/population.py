"""The simulated population: events per user, each user's sessions, and when every event happens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.simulate.catalog import Catalog
from behavior_stream.simulate.shoppers import Behavior, SessionSimulator, Shopper

# Median pause before an event of each type, in seconds: reading a page, pressing a button, paying.
_MEDIAN_PAUSE_S = np.zeros(len(TYPE_INDEX))
for _type, _seconds in {
    EventType.CLICK: 20.0,
    EventType.SEARCH: 12.0,
    EventType.ADD_TO_CART: 6.0,
    EventType.FAVORITE: 6.0,
    EventType.PURCHASE: 60.0,
}.items():
    _MEDIAN_PAUSE_S[TYPE_INDEX[_type]] = _seconds
MIN_SESSION_GAP_MS = 60 * 60_000  # sessions are at least an hour apart, well over the 30-minute rule
MAX_PAUSE_MS = 15 * 60_000  # and a pause within a session is at most 15 minutes


@dataclass(frozen=True, eq=False)
class SimEvents:
    """Simulated events in columns, grouped by user and in time order within a user."""

    user: np.ndarray  # (n,) int64 user index
    session: np.ndarray  # (n,) int64 session ordinal within its user
    type_: np.ndarray  # (n,) int64 index into EVENT_TYPES
    item: np.ndarray  # (n,) int64 item index, -1 for a search
    query: list[str | None]  # (n,) the search text, None for other events
    ts: np.ndarray  # (n,) int64 event time, ms


def event_budgets(rng: np.random.Generator, n_users: int, n_events: int) -> np.ndarray:
    """(n_users,) int64 event counts summing to `n_events`. Activity is lognormal: a few heavy users
    have many sessions, and with few events some users have none."""
    activity = rng.lognormal(0.0, 1.0, n_users)
    return rng.multinomial(n_events, activity / activity.sum())


def timestamps(
    rng: np.random.Generator,
    user: np.ndarray,
    session: np.ndarray,
    type_: np.ndarray,
    start_ms: int,
    span_ms: int,
) -> np.ndarray:
    """(n,) int64 event times for events grouped by user, sessions in order within a user: pauses
    of seconds to minutes within a session, hours to days between sessions, each user's sessions
    spread over about `span_ms` after `start_ms`."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first_of_user = np.r_[True, user[1:] != user[:-1]]
    first_of_session = first_of_user | np.r_[True, session[1:] != session[:-1]]
    starts = np.flatnonzero(first_of_user)
    counts = np.diff(np.r_[starts, n])
    # A user's session starts are a Poisson process conditioned on its span: exponential gaps (the
    # first is the offset from start_ms, and one more follows the last) scaled to sum to span_ms.
    raw = np.where(first_of_session, rng.exponential(1.0, n), 0.0)
    scale = np.repeat(span_ms / (np.add.reduceat(raw, starts) + rng.exponential(1.0, len(starts))), counts)
    gap = raw * scale + np.where(first_of_user, 0, MIN_SESSION_GAP_MS)
    pause = _MEDIAN_PAUSE_S[type_] * 1000.0 * np.exp(0.9 * rng.standard_normal(n))
    dt = np.rint(np.where(first_of_session, gap, np.clip(pause, 1000.0, MAX_PAUSE_MS))).astype(np.int64)
    total = np.cumsum(dt)
    return start_ms + total - np.repeat(total[starts] - dt[starts], counts)


def simulate(
    rng: np.random.Generator,
    catalog: Catalog,
    n_users: int,
    n_events: int,
    start_ms: int,
    span_ms: int,
    behavior: Behavior | None = None,
    on_session: Callable[[int, int, Shopper, int], None] | None = None,
) -> SimEvents:
    """Exactly `n_events` events of up to `n_users` shoppers; a user's last session is cut short
    when it would exceed the user's share of events.

    `on_session(user, ordinal, shopper, events_left)` is called before each session is drawn, with
    the live shopper (copy it to keep it): what benchmarks/probe_ceiling.py re-simulates from."""
    sim = SessionSimulator(rng, catalog, behavior or Behavior())
    users: list[int] = []
    sessions: list[int] = []
    types: list[int] = []
    items: list[int] = []
    queries: list[str | None] = []
    for index, budget in enumerate(event_budgets(rng, n_users, n_events).tolist()):
        shopper = sim.new_shopper() if budget else None
        ordinal = 0
        while shopper is not None and budget > 0:
            if on_session is not None:
                on_session(index, ordinal, shopper, budget)
            steps = sim.session(shopper)[:budget]
            users.extend([index] * len(steps))
            sessions.extend([ordinal] * len(steps))
            for kind, item, query in steps:
                types.append(kind)
                items.append(item)
                queries.append(query)
            budget -= len(steps)
            ordinal += 1
    user, session = np.asarray(users, dtype=np.int64), np.asarray(sessions, dtype=np.int64)
    type_ = np.asarray(types, dtype=np.int64)
    ts = timestamps(rng, user, session, type_, start_ms, span_ms)
    return SimEvents(user, session, type_, np.asarray(items, dtype=np.int64), queries, ts)

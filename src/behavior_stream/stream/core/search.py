"""Personalised search: rank items for a user and a query from the user's live representation.

A search is an input event of the model (its query is embedded as a hashed n-gram bag), so the
search ranking is the model's next-item ranking after a hypothetical search event carrying the
query, stepped on a copy of the user's state (lookahead.py) and never committed. The event is
timed at the user's last event (no gap, same session: the query continues what they were doing),
or now for a user with no events. With candidates, only those are ranked (re-ranking).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.lookahead import Ranked, rank_after
from behavior_stream.stream.core.state import UserState

MAX_QUERY_CHARS = 512  # as the event schema allows
MAX_CANDIDATES = 10_000


def search_event(user_id: str, st: UserState, query: str) -> Event:
    """The hypothetical search event of a request, timed at the user's last event."""
    ts = st.last_ts if st.last_ts >= 0 else int(time.time() * 1000)
    return make_event(user_id, EventType.SEARCH, ts, query=query, session_id=st.session_id or None)


def search_rankings(
    engine: ModelEngine,
    users: Sequence[str],
    states: Sequence[UserState],
    queries: Sequence[str],
    excluded: Sequence[set[int]],
    k: int,
    candidates: Sequence[list[int] | None] | None = None,
) -> list[Ranked]:
    """Each user's top-k items for their query (among their candidates when given)."""
    events = [[search_event(u, st, q)] for u, st, q in zip(users, states, queries, strict=True)]
    return rank_after(engine, states, events, excluded, k, candidates)

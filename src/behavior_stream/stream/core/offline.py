"""Offline replay of the stream's state transition: the reference the stream is checked against.

Applies each user's events one at a time with the same engine step and the same state codec
(encode/decode after every event), with no Kafka, batching or concurrency involved.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from behavior_stream.schema.events import Event
from behavior_stream.schema.sessions import session_key
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.state import UserState, decode_state, encode_state


def replay_states(events: Iterable[Event], engine: ModelEngine) -> dict[str, UserState]:
    """Final state per user after applying each user's events (in the given order) one at a time.

    Users are independent, so round r steps the r-th event of every user in one call; each
    event is still its own `step`, and every state goes through the codec after every event.
    """
    per_user: dict[str, list[Event]] = {}
    for ev in events:
        per_user.setdefault(ev.user_id, []).append(ev)
    users = list(per_user)
    encoded = {u: encode_state(engine.fresh_state()) for u in users}
    for r in range(max((len(v) for v in per_user.values()), default=0)):
        active = [u for u in users if len(per_user[u]) > r]
        states = [decode_state(encoded[u]) for u in active]
        prev_ts = [st.last_ts for st in states]
        engine.step_users(states, [[per_user[u][r]] for u in active], prev_ts)
        for u, st in zip(active, states, strict=True):
            st.last_ts = per_user[u][r].ts
            # What the stream keeps for the session rule: the next step compares with it.
            st.session_id = session_key(per_user[u][r].session_id)
            st.events_seen += 1
            encoded[u] = encode_state(st)
    return {user: decode_state(raw) for user, raw in encoded.items()}


def representations(states: dict[str, UserState], engine: ModelEngine) -> dict[str, np.ndarray]:
    """The representation vector (top-layer hidden state) of each user state."""
    top = engine.config.num_layers - 1
    h = engine.config.hidden_size
    return {user: st.hidden[top * h : (top + 1) * h].copy() for user, st in states.items()}

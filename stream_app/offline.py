"""Offline replay of the stream's state transition: the reference the stream is checked against.

Applies each user's events one at a time with the same engine step and the same state codec
(encode/decode after every event), with no Kafka, batching or concurrency involved.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from model.events import Event
from stream_app.engine import ModelEngine
from stream_app.state import UserState, decode_state, encode_state


def replay_states(events: Iterable[Event], engine: ModelEngine) -> dict[str, UserState]:
    """Final state per user after applying `events` (in the given order) one by one."""
    states: dict[str, bytes] = {}
    for ev in events:
        raw = states.get(ev.user_id)
        st = decode_state(raw) if raw is not None else engine.fresh_state()
        prev_ts = st.last_ts
        engine.step_users([st], [[ev]], [prev_ts])
        st.last_ts = ev.ts
        st.events_seen += 1
        states[ev.user_id] = encode_state(st)
    return {user: decode_state(raw) for user, raw in states.items()}


def representations(states: dict[str, UserState], engine: ModelEngine) -> dict[str, np.ndarray]:
    """The representation vector (top-layer hidden state) of each user state."""
    top = engine.config.num_layers - 1
    h = engine.config.hidden_size
    return {user: st.hidden[top * h : (top + 1) * h].copy() for user, st in states.items()}

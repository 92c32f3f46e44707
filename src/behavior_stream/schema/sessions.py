"""The session rule: the one definition of where a user's session starts.

A new session starts

1. at a user's first event;
2. when the event comes more than `gap_ms` (default `SESSION_GAP_MS`, 30 min, event time)
   after the user's previous event; or
3. when both the event and the previous one carry a session id and the ids differ.

An id carried by only one of the two events says nothing (rule 3 needs both), and an empty
string counts as no id (the stream state stores "" for "none"). Ids are compared by
`session_key`, the form the stream state stores (a long id becomes a digest), so a comparison
gives the same answer whether the previous id was kept whole or read back from a state.
Out-of-order events (a negative gap) never open a session by time.

The model's new-session input flag (`nn.features`), the stream's session window
(`stream.core.process`), the baselines' sessions and the evaluation's per-session-position
breakdown all use this rule; the model, the stream and a model's evaluation pass
`ModelConfig.session_gap_ms`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b

from behavior_stream.schema.events import Event

SESSION_GAP_MS = 30 * 60 * 1000
NO_SESSION = 0  # `session_code` of an event without a session id
# Ids up to this many UTF-8 bytes are compared as given, longer ones by a digest of this length:
# must match the stream state's `stored_session_id` (tests/schema/test_sessions.py checks it).
SESSION_KEY_BYTES = 16


def session_key(session_id: str | None) -> str:
    """The id as compared (and as the stream state stores it): "" for none, the id itself up to
    `SESSION_KEY_BYTES` UTF-8 bytes, else `#` and hex digits of its BLAKE2b digest (60 bits)."""
    if not session_id:
        return ""
    raw = session_id.encode("utf-8")
    if len(raw) <= SESSION_KEY_BYTES:
        return session_id
    return "#" + blake2b(raw, digest_size=8).hexdigest()[: SESSION_KEY_BYTES - 1]


def session_boundary(
    prev_ts: int | None, prev_session_id: str | None, ts: int, session_id: str | None, gap_ms: int
) -> bool:
    """True when an event (`ts`, `session_id`) opens a session after the previous one (see module).

    `prev_ts` None means the user has no previous event.
    """
    if prev_ts is None or ts - prev_ts > gap_ms:
        return True
    prev_key, key = session_key(prev_session_id), session_key(session_id)
    return bool(prev_key) and bool(key) and prev_key != key


def is_new_session(prev: Event | None, event: Event, gap_ms: int = SESSION_GAP_MS) -> bool:
    """True when `event` opens a session after the user's previous event `prev` (None: first event)."""
    if prev is None:
        return True
    return session_boundary(prev.ts, prev.session_id, event.ts, event.session_id, gap_ms)


def session_offsets(events: Sequence[Event], gap_ms: int = SESSION_GAP_MS) -> list[int]:
    """Entry i: how many events of event i's session precede it (0 = event i opens a session).

    `events` is one user's sequence in order; its first event opens a session.
    """
    offsets: list[int] = []
    for i, event in enumerate(events):
        new = is_new_session(events[i - 1] if i else None, event, gap_ms)
        offsets.append(0 if new else offsets[-1] + 1)
    return offsets


@lru_cache(maxsize=65536)
def session_code(session_id: str | None) -> int:
    """A non-zero 62-bit integer standing for a session id's `session_key`, `NO_SESSION` (0) for none.

    Lets tensors carry session ids (the model compares codes where this module compares keys);
    64-bit BLAKE2b makes two different keys sharing a code practically impossible.
    """
    key = session_key(session_id)
    if not key:
        return NO_SESSION
    digest = int.from_bytes(blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
    return (digest >> 2) | 1  # below 2**62, odd, so never 0 and fits int64 with room

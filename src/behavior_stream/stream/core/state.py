"""Per-user stream state and its compact binary codec (the value stored in the Faust table).

The codec is a fixed little-endian header followed by numpy arrays, so a user costs a few
hundred bytes and decoding never runs code from the topic (no pickle). Every part is capped
(the recent-id, carted and purchased lists, the history window, the session id), so a value
never exceeds `max_state_bytes` (547 B at the defaults: GRU hidden 64, window 32, 8 ids each). The hidden
state is kept in float32: with float16 the rounding point would depend on how events were
batched, and the stream's states could not match an offline replay exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from behavior_stream.schema.events import EVENT_TYPES
from behavior_stream.schema.sessions import SESSION_KEY_BYTES, session_key

CODEC_VERSION = 2
# version, model tag, events seen, last offsets (input, repartition), last event ts, last seen,
# session start, per-type session counts, then the lengths of the variable parts; version 2
# adds the byte width of the history's item indices.
_HEADER_V1 = struct.Struct("<BIIqqqqq" + "H" * len(EVENT_TYPES) + "BBBBHB")
_HEADER = struct.Struct("<BIIqqqqq" + "H" * len(EVENT_TYPES) + "BBBBHBB")
# History items are stored as index + 1 (the window's -1 padding becomes 0) in 3 bytes while
# the model's input vocabulary allows, and event types as 4-bit codes, two per byte: together
# 48 of the 160 bytes a 32-event window took in version 1.
_NARROW_LIMIT = 1 << 24
USER_KEY_PREFIX = b"u:"
_LAST_TS = struct.Struct("<q")
_LAST_TS_OFFSET = struct.calcsize("<BIIqq")  # version, tag, seen, two offsets


class StateCodecError(ValueError):
    """A stored state value that cannot be decoded (wrong version or truncated)."""


@dataclass(slots=True)
class UserState:
    """Everything the worker keeps per user; mutated only inside one batch, then re-encoded."""

    model_tag: int = 0
    events_seen: int = 0
    last_offset: int = -1
    last_offset_repart: int = -1
    last_ts: int = -1
    last_seen_ms: int = 0
    session_start: int = -1
    session_id: str = ""
    session_counts: list[int] = field(default_factory=lambda: [0] * len(EVENT_TYPES))
    recent_ids: list[int] = field(default_factory=list)
    carted: list[int] = field(default_factory=list)
    purchased: list[int] = field(default_factory=list)
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    history_types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    hidden: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def fresh(self) -> bool:
        """True until the first event has been applied."""
        return self.events_seen == 0


def session_label(user_id: str, state: UserState) -> str:
    """The session id shown in outputs: the producer's, else `<user>@<session start ms>`.

    Derived ids are not stored, which keeps ~20 bytes out of every state value.
    """
    return state.session_id or f"{user_id}@{state.session_start}"


def user_key(user_id: str) -> bytes:
    """Table key of a user (prefixed so reserved keys such as watermarks never collide)."""
    return USER_KEY_PREFIX + user_id.encode("utf-8")


def user_of_key(key: bytes) -> str | None:
    """Inverse of `user_key`; None for reserved (non-user) keys."""
    if not key.startswith(USER_KEY_PREFIX):
        return None
    return key[len(USER_KEY_PREFIX) :].decode("utf-8")


def max_state_bytes(
    hidden_floats: int, window: int, max_ids: int, max_kept: int, wide_items: bool = False
) -> int:
    """The largest value `encode_state` writes: `hidden_floats` (hidden size x layers, x2 for an
    LSTM's cell), a full history `window`, `max_ids` recent ids, `max_kept` carted and as many
    purchased items, the longest stored session id; 4-byte history items when `wide_items`."""
    item_bytes = 4 if wide_items else 3
    lists = 4 * (max_ids + 2 * max_kept)
    history = item_bytes * window + (window + 1) // 2
    return _HEADER.size + lists + history + 4 * hidden_floats + SESSION_KEY_BYTES


def encode_state(state: UserState) -> bytes:
    """Serialize a user state to bytes (at most `max_state_bytes` of its settings)."""
    # The id as the session rule compares it: a long id is kept as a digest of bounded length.
    sid = session_key(state.session_id).encode("utf-8")
    width, items = _pack_items(np.asarray(state.history))
    header = _HEADER.pack(
        CODEC_VERSION,
        state.model_tag,
        min(state.events_seen, 0xFFFFFFFF),
        state.last_offset,
        state.last_offset_repart,
        state.last_ts,
        state.last_seen_ms,
        state.session_start,
        *(min(c, 0xFFFF) for c in state.session_counts),
        len(state.recent_ids),
        len(state.carted),
        len(state.purchased),
        len(state.history),
        len(state.hidden),
        len(sid),
        width,
    )
    return b"".join(
        (
            header,
            np.asarray(state.recent_ids, dtype="<u4").tobytes(),
            np.asarray(state.carted, dtype="<i4").tobytes(),
            np.asarray(state.purchased, dtype="<i4").tobytes(),
            items,
            _pack_nibbles(np.asarray(state.history_types, dtype="u1")),
            np.asarray(state.hidden, dtype="<f4").tobytes(),
            sid,
        )
    )


def _pack_items(history: np.ndarray) -> tuple[int, bytes]:
    """(width, bytes): index + 1 as unsigned little-endian, 3 bytes each when all fit."""
    shifted = history.astype("<u4") + np.uint32(1)  # -1 wraps to 0xFFFFFFFF, + 1 gives 0
    if shifted.size == 0 or int(shifted.max()) < _NARROW_LIMIT:
        return 3, shifted.view("u1").reshape(-1, 4)[:, :3].tobytes()
    return 4, shifted.tobytes()


def _unpack_items(data: bytes, width: int, count: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype="u1", count=width * count).reshape(count, width)
    padded = np.zeros((count, 4), "u1")
    padded[:, :width] = raw
    return (padded.view("<u4").reshape(count).astype(np.int64) - 1).astype(np.int32)


def _pack_nibbles(types: np.ndarray) -> bytes:
    if types.size and int(types.max()) > 0xF:
        raise ValueError("event type codes must fit in 4 bits")
    padded = np.zeros(types.size + types.size % 2, "u1")
    padded[: types.size] = types
    return (padded[0::2] | (padded[1::2] << 4)).astype("u1").tobytes()


def _unpack_nibbles(data: bytes, count: int) -> np.ndarray:
    packed = np.frombuffer(data, dtype="u1", count=(count + 1) // 2)
    out = np.empty(packed.size * 2, "u1")
    out[0::2], out[1::2] = packed & 0xF, packed >> 4
    return out[:count].copy()


def last_event_ts(data: bytes) -> int:
    """The event time of the user's last event, read from the header alone (for TTL scans)."""
    return int(_LAST_TS.unpack_from(data, _LAST_TS_OFFSET)[0])


def decode_state(data: bytes) -> UserState:
    """Deserialize bytes written by `encode_state` (this or the previous codec version);
    raises StateCodecError on bad input."""
    version = data[0] if data else -1
    header = {1: _HEADER_V1, CODEC_VERSION: _HEADER}.get(version)
    if header is None or len(data) < header.size:
        raise StateCodecError(f"state value of {len(data)} bytes is not codec version 1 or {CODEC_VERSION}")
    fields = header.unpack_from(data)
    n_types = len(EVENT_TYPES)
    _version, tag, seen, off, off_rep, last_ts, last_seen, s_start = fields[:8]
    counts = list(fields[8 : 8 + n_types])
    n_recent, n_cart, n_purch, n_hist, n_hidden, n_sid = fields[8 + n_types : 14 + n_types]
    width = fields[14 + n_types] if version == CODEC_VERSION else 4
    types_len = (n_hist + 1) // 2 if version == CODEC_VERSION else n_hist
    expected = header.size + 4 * (n_recent + n_cart + n_purch + n_hidden) + width * n_hist + types_len + n_sid
    if width not in (3, 4) or len(data) != expected:
        raise StateCodecError(f"state value has {len(data)} bytes, header says {expected}")
    pos = header.size

    def take(dtype: str, count: int, width: int) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += count * width
        return arr

    recent = take("<u4", n_recent, 4).tolist()
    carted = take("<i4", n_cart, 4).tolist()
    purchased = take("<i4", n_purch, 4).tolist()
    if version == CODEC_VERSION:
        history = _unpack_items(data[pos : pos + width * n_hist], width, n_hist)
        history_types = _unpack_nibbles(data[pos + width * n_hist : pos + width * n_hist + types_len], n_hist)
        pos += width * n_hist + types_len
    else:
        history = take("<i4", n_hist, 4).copy()
        history_types = take("u1", n_hist, 1).copy()
    hidden = take("<f4", n_hidden, 4).copy()
    sid = data[pos : pos + n_sid].decode("utf-8", errors="replace")
    return UserState(
        model_tag=tag,
        events_seen=seen,
        last_offset=off,
        last_offset_repart=off_rep,
        last_ts=last_ts,
        last_seen_ms=last_seen,
        session_start=s_start,
        session_id=sid,
        session_counts=counts,
        recent_ids=recent,
        carted=carted,
        purchased=purchased,
        history=history,
        history_types=history_types,
        hidden=hidden,
    )

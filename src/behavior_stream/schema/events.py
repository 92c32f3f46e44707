"""The one behavior-event schema: the typed event, its validation, and its id derivation.

Every other part of behavior-stream (loaders, generator, training, the stream worker) builds
events through this module, so a record that is valid here is valid everywhere.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

MAX_RECORD_BYTES = 16 * 1024
MAX_QUERY_CHARS = 512
MAX_ID_CHARS = 256
# Event time must fall in [2000-01-01, 2100-01-01): fixed bounds keep validation deterministic
# for replays, and still reject negative, seconds-instead-of-ms and far-future timestamps.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000


class EventType(StrEnum):
    """The behavior types a site emits, in funnel order."""

    CLICK = "click"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    FAVORITE = "favorite"
    PURCHASE = "purchase"


# Index of each type, stable across versions: the model embeds types by this index.
EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
TYPE_INDEX: dict[EventType, int] = {t: i for i, t in enumerate(EVENT_TYPES)}


class Reason(StrEnum):
    """Why a record was rejected; the label of the invalid-events counter and the DLQ `error`."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    OVERSIZE = "oversize"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TIMESTAMP = "bad_timestamp"
    EMPTY_FIELD = "empty_field"
    FIELD_TOO_LONG = "field_too_long"


@dataclass(frozen=True, slots=True)
class Event:
    """A validated behavior event. `ts` is event time in milliseconds since the epoch."""

    event_id: str
    user_id: str
    type: EventType
    item_id: str | None
    query: str | None
    ts: int
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object of the schema."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "type": self.type.value,
            "item_id": self.item_id,
            "query": self.query,
            "ts": self.ts,
            "session_id": self.session_id,
        }

    def to_json(self) -> bytes:
        """The event as a Kafka message value (UTF-8 JSON)."""
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class Invalid:
    """A rejected record: a reason from `Reason` and a human-readable detail."""

    reason: Reason
    detail: str


def derive_event_id(
    user_id: str, type_: str, item_id: str | None, query: str | None, ts: int, session_id: str | None
) -> str:
    """A deterministic id from the event's content, so a re-sent event gets the same id."""
    key = "\x1f".join((user_id, type_, item_id or "", query or "", str(ts), session_id or ""))
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()


def make_event(
    user_id: str,
    type_: EventType,
    ts: int,
    item_id: str | None = None,
    query: str | None = None,
    session_id: str | None = None,
    event_id: str | None = None,
) -> Event:
    """Build an event from trusted parts (loaders, generator), deriving the id when absent."""
    if event_id is None:
        event_id = derive_event_id(user_id, type_.value, item_id, query, ts, session_id)
    return Event(event_id, user_id, type_, item_id, query, ts, session_id)


def parse_event(raw: bytes | str) -> Event | Invalid:
    """Decode and validate one raw record (a Kafka value or a JSONL line)."""
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_RECORD_BYTES:
        return Invalid(Reason.OVERSIZE, f"record is {len(data)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(Reason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return Invalid(Reason.NOT_JSON, f"not JSON: {exc}"[:200])
    return validate_event(obj)


def _check_id(obj: dict[str, Any], name: str, required: bool) -> str | Invalid | None:
    value = obj.get(name)
    if value is None:
        if required:
            what = "missing" if name not in obj else "null"
            return Invalid(Reason.MISSING_FIELD, f"{name} is {what}")
        return None
    if not isinstance(value, str):
        return Invalid(Reason.WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    if not value or value.isspace():  # isspace: no copy of the id per event, as strip() made
        # A blank id would pass for a real user or item (and every blank one would be the same).
        return Invalid(Reason.EMPTY_FIELD, f"{name} is empty" if not value else f"{name} is only whitespace")
    if len(value) > MAX_ID_CHARS:
        return Invalid(Reason.FIELD_TOO_LONG, f"{name} has {len(value)} chars, limit {MAX_ID_CHARS}")
    return value


def _check_ts(obj: dict[str, Any]) -> int | Invalid:
    if "ts" not in obj or obj["ts"] is None:
        return Invalid(Reason.MISSING_FIELD, "ts is missing")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        if isinstance(ts, float) and not math.isfinite(ts):
            return Invalid(Reason.BAD_TIMESTAMP, f"ts {ts} is not finite")
        if isinstance(ts, float) and not MIN_TS_MS <= ts < MAX_TS_MS:
            # orjson reads an integer beyond 64 bits as a float: what is wrong is its size, not its type.
            return Invalid(Reason.BAD_TIMESTAMP, f"ts {ts:g} is outside [{MIN_TS_MS}, {MAX_TS_MS}) ms")
        return Invalid(Reason.WRONG_TYPE, f"ts must be an integer (ms since epoch), got {type(ts).__name__}")
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        return Invalid(Reason.BAD_TIMESTAMP, f"ts {ts} is outside [{MIN_TS_MS}, {MAX_TS_MS}) ms")
    return ts


def validate_event(obj: Any) -> Event | Invalid:
    """Validate a decoded JSON value against the schema; unknown extra fields are ignored."""
    if not isinstance(obj, dict):
        return Invalid(Reason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    user_id = _check_id(obj, "user_id", required=True)
    if isinstance(user_id, Invalid):
        return user_id
    raw_type = obj.get("type")
    if raw_type is None:
        return Invalid(Reason.MISSING_FIELD, "type is missing")
    if not isinstance(raw_type, str):
        return Invalid(Reason.WRONG_TYPE, f"type must be a string, got {type(raw_type).__name__}")
    try:
        type_ = EventType(raw_type)
    except ValueError:
        return Invalid(Reason.UNKNOWN_TYPE, f"unknown event type {raw_type[:40]!r}")
    is_search = type_ is EventType.SEARCH
    item_id = _check_id(obj, "item_id", required=not is_search)
    if isinstance(item_id, Invalid):
        return item_id
    query = obj.get("query")
    if query is None:
        if is_search:
            return Invalid(Reason.MISSING_FIELD, "query is required for search events")
    elif not isinstance(query, str):
        return Invalid(Reason.WRONG_TYPE, f"query must be a string, got {type(query).__name__}")
    elif len(query) > MAX_QUERY_CHARS:
        return Invalid(Reason.FIELD_TOO_LONG, f"query has {len(query)} chars, limit {MAX_QUERY_CHARS}")
    elif is_search and not query.strip():
        return Invalid(Reason.EMPTY_FIELD, "query is empty")
    ts = _check_ts(obj)
    if isinstance(ts, Invalid):
        return ts
    session_id = _check_id(obj, "session_id", required=False)
    if isinstance(session_id, Invalid):
        return session_id
    event_id = _check_id(obj, "event_id", required=False)
    if isinstance(event_id, Invalid):
        return event_id
    return make_event(user_id, type_, ts, item_id, query, session_id, event_id)  # type: ignore[arg-type]

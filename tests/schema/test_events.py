"""Tests for the event schema: every rejection reason, valid edge cases, and event-id derivation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from behavior_stream.schema.events import (
    MAX_ID_CHARS,
    MAX_QUERY_CHARS,
    MAX_RECORD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    Event,
    EventType,
    Invalid,
    Reason,
    make_event,
    parse_event,
    validate_event,
)

TS = 1_511_544_070_000  # 2017-11-24 in ms
CLICK: dict[str, Any] = {"user_id": "u1", "type": "click", "item_id": "i1", "ts": TS}
SEARCH: dict[str, Any] = {"user_id": "u1", "type": "search", "query": "red shoes", "ts": TS}


def record(base: dict[str, Any] = CLICK, drop: str | None = None, **changes: Any) -> bytes:
    """`base` with fields changed (or one dropped), as JSON bytes."""
    obj = {**base, **changes}
    if drop is not None:
        del obj[drop]
    return orjson.dumps(obj)


def padded(size: int) -> bytes:
    """A valid click record of exactly `size` bytes (padding in an ignored extra field)."""
    empty = record(pad="")
    return record(pad="x" * (size - len(empty)))


BAD_RECORDS: list[tuple[str, bytes, Reason]] = [
    ("invalid utf-8 byte", b'{"user_id": "\xff", "type": "click"}', Reason.NOT_UTF8),
    ("truncated json", record()[:-5], Reason.NOT_JSON),
    ("empty line", b"", Reason.NOT_JSON),
    ("NaN literal", record()[:-1] + b', "x": NaN}', Reason.NOT_JSON),
    ("number overflowing a double", record(ts=0).replace(b'"ts":0', b'"ts":1e400'), Reason.NOT_JSON),
    ("array", b'[{"user_id": "u1"}]', Reason.NOT_OBJECT),
    ("string", b'"click"', Reason.NOT_OBJECT),
    ("null", b"null", Reason.NOT_OBJECT),
    ("number", b"42", Reason.NOT_OBJECT),
    ("over 16 KiB", padded(MAX_RECORD_BYTES + 1), Reason.OVERSIZE),
    ("missing user_id", record(drop="user_id"), Reason.MISSING_FIELD),
    ("null user_id", record(user_id=None), Reason.MISSING_FIELD),
    ("missing type", record(drop="type"), Reason.MISSING_FIELD),
    ("missing item_id on click", record(drop="item_id"), Reason.MISSING_FIELD),
    ("null item_id on purchase", record(type="purchase", item_id=None), Reason.MISSING_FIELD),
    ("missing ts", record(drop="ts"), Reason.MISSING_FIELD),
    ("null ts", record(ts=None), Reason.MISSING_FIELD),
    ("search without query", record(SEARCH, drop="query"), Reason.MISSING_FIELD),
    ("int user_id", record(user_id=7), Reason.WRONG_TYPE),
    ("int item_id", record(item_id=7), Reason.WRONG_TYPE),
    ("int type", record(type=1), Reason.WRONG_TYPE),
    ("list query", record(SEARCH, query=["red"]), Reason.WRONG_TYPE),
    ("int session_id", record(session_id=3), Reason.WRONG_TYPE),
    ("int event_id", record(event_id=3), Reason.WRONG_TYPE),
    ("string ts", record(ts=str(TS)), Reason.WRONG_TYPE),
    ("bool ts", record(ts=True), Reason.WRONG_TYPE),
    ("float ts", record(ts=float(TS)), Reason.WRONG_TYPE),
    ("unknown type", record(type="view"), Reason.UNKNOWN_TYPE),
    ("type in the wrong case", record(type="Click"), Reason.UNKNOWN_TYPE),
    ("negative ts", record(ts=-1), Reason.BAD_TIMESTAMP),
    ("ts in seconds", record(ts=TS // 1000), Reason.BAD_TIMESTAMP),
    ("ts just before 2000", record(ts=MIN_TS_MS - 1), Reason.BAD_TIMESTAMP),
    ("far-future ts", record(ts=MAX_TS_MS), Reason.BAD_TIMESTAMP),
    ("ts beyond int64 max but a u64", record(ts=2**64 - 1), Reason.BAD_TIMESTAMP),
    (
        "integer beyond 64 bits (parsed as float)",
        record(ts=0).replace(b'"ts":0', b'"ts":' + b"9" * 25),
        Reason.BAD_TIMESTAMP,
    ),
    (
        "negative integer beyond 64 bits",
        record(ts=0).replace(b'"ts":0', b'"ts":-' + b"9" * 20),
        Reason.BAD_TIMESTAMP,
    ),
    ("empty user_id", record(user_id=""), Reason.EMPTY_FIELD),
    ("empty item_id", record(item_id=""), Reason.EMPTY_FIELD),
    ("empty session_id", record(session_id=""), Reason.EMPTY_FIELD),
    ("empty event_id", record(event_id=""), Reason.EMPTY_FIELD),
    ("whitespace user_id", record(user_id="   "), Reason.EMPTY_FIELD),
    ("whitespace item_id", record(item_id="\t"), Reason.EMPTY_FIELD),
    ("whitespace session_id", record(session_id=" \u3000"), Reason.EMPTY_FIELD),
    ("blank search query", record(SEARCH, query="   "), Reason.EMPTY_FIELD),
    ("long user_id", record(user_id="u" * (MAX_ID_CHARS + 1)), Reason.FIELD_TOO_LONG),
    ("long item_id", record(item_id="i" * (MAX_ID_CHARS + 1)), Reason.FIELD_TOO_LONG),
    ("long session_id", record(session_id="s" * (MAX_ID_CHARS + 1)), Reason.FIELD_TOO_LONG),
    ("long query", record(SEARCH, query="q" * (MAX_QUERY_CHARS + 1)), Reason.FIELD_TOO_LONG),
]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(raw, reason) for _, raw, reason in BAD_RECORDS],
    ids=[name for name, _, _ in BAD_RECORDS],
)
def test_bad_record_is_rejected_with_its_reason(raw: bytes, reason: Reason) -> None:
    result = parse_event(raw)
    assert isinstance(result, Invalid), result
    assert result.reason is reason
    assert result.detail


def test_bad_record_table_covers_every_reason() -> None:
    assert {reason for _, _, reason in BAD_RECORDS} == set(Reason)


def test_lone_surrogate_in_str_input_is_not_utf8() -> None:
    result = parse_event('{"user_id": "\ud800", "type": "click"}')
    assert isinstance(result, Invalid) and result.reason is Reason.NOT_UTF8


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_ts_from_python_is_a_bad_timestamp(value: float) -> None:
    result = validate_event({**CLICK, "ts": value})
    assert isinstance(result, Invalid) and result.reason is Reason.BAD_TIMESTAMP


@pytest.mark.parametrize(
    "raw",
    [
        padded(MAX_RECORD_BYTES),
        record(ts=MIN_TS_MS),
        record(ts=MAX_TS_MS - 1),
        record(user_id="u" * MAX_ID_CHARS, item_id="i" * MAX_ID_CHARS),
        record(SEARCH, query="q" * MAX_QUERY_CHARS),
        record(SEARCH, item_id=None),
        record(query=""),  # a click may carry an empty query: only searches need one
        record(session_id="s1", referrer="home", price=9.5, nested={"a": [1, 2]}),
    ],
    ids=[
        "exactly 16 KiB",
        "min ts",
        "max ts",
        "256-char ids",
        "512-char query",
        "search without item",
        "click with empty query",
        "extra fields",
    ],
)
def test_valid_edge_cases_are_accepted(raw: bytes) -> None:
    assert isinstance(parse_event(raw), Event)


def test_parsed_fields_and_str_input() -> None:
    event = parse_event(record(SEARCH, session_id="s9", referrer="home").decode())
    assert isinstance(event, Event)
    assert (event.user_id, event.type, event.item_id, event.query, event.ts, event.session_id) == (
        "u1",
        EventType.SEARCH,
        None,
        "red shoes",
        TS,
        "s9",
    )
    assert "referrer" not in event.to_dict()


def test_event_id_is_deterministic_and_stable_across_resends() -> None:
    first, again = parse_event(record()), parse_event(record())
    built = make_event("u1", EventType.CLICK, TS, item_id="i1")
    assert isinstance(first, Event) and isinstance(again, Event)
    assert first.event_id == again.event_id == built.event_id
    assert first == built


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": "u2"},
        {"type": "purchase"},
        {"item_id": "i2"},
        {"query": "q"},
        {"ts": TS + 1},
        {"session_id": "s1"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_event_id_differs_when_any_field_differs(change: dict[str, Any]) -> None:
    base, changed = parse_event(record()), parse_event(record(**change))
    assert isinstance(base, Event) and isinstance(changed, Event)
    assert base.event_id != changed.event_id


def test_explicit_event_id_is_kept() -> None:
    event = parse_event(record(event_id="client-123"))
    assert isinstance(event, Event) and event.event_id == "client-123"
    assert make_event("u1", EventType.CLICK, TS, item_id="i1", event_id="e").event_id == "e"


@pytest.mark.parametrize(
    "event",
    [
        make_event("u1", EventType.CLICK, TS, item_id="i1"),
        make_event("u1", EventType.SEARCH, TS, query='red "shoes" ✓', session_id="s1"),
        make_event("ü", EventType.PURCHASE, MIN_TS_MS, item_id="i/1", event_id="kept"),
    ],
)
def test_to_json_round_trips_through_parse_event(event: Event) -> None:
    assert parse_event(event.to_json()) == event

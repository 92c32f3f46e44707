"""The wire schema of the output topics: the exact JSON each message type puts on its topic."""

from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import orjson

from behavior_stream.schema.events import EventType, Invalid, Reason, make_event
from behavior_stream.stream.core.messages import DeadLetter, Recommendation, Representation, ScenarioFeed
from behavior_stream.stream.core.outputs import dlq_message, feed_entries, scenario_message, user_messages
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.state import UserState

TS = 1_700_000_000_000


def _user_messages(session_id: str = "") -> tuple[dict, dict, bytes, bytes]:
    st = UserState(events_seen=7, session_start=TS - 60_000, session_id=session_id)
    last = make_event("u1", EventType.CLICK, TS, item_id="i9", event_id="e-42")
    vector = np.array([0.5, -1.25, 3.0], np.float32)
    rep, rec = user_messages(
        ("reps", "recs"), st, last, "gru-v1", "B", ["i1", "i2"], [0.1234567, 2.0], vector
    )
    assert (rep.topic, rec.topic) == ("reps", "recs")
    assert rep.partition is None and rec.partition is None  # partitioned by key
    return orjson.loads(rep.value), orjson.loads(rec.value), rep.key, rec.key


def test_representation_fields() -> None:
    body, _, key, _ = _user_messages()
    assert key == b"u1"
    assert list(body) == [f.name for f in dataclasses.fields(Representation)]
    assert body == {
        "user_id": "u1",
        "ts": TS,
        "session_id": f"u1@{TS - 60_000}",  # derived: no producer session id
        "vector": [0.5, -1.25, 3.0],
        "model_version": "gru-v1",
        "variant": "B",
        "events_seen": 7,
        "purchase_probability": None,  # no intent given
        "purchase_calibration": "none",
    }
    assert _user_messages("s-1")[0]["session_id"] == "s-1"


def test_recommendation_fields() -> None:
    _, body, _, key = _user_messages()
    assert key == b"u1"
    assert list(body) == [f.name for f in dataclasses.fields(Recommendation)]
    assert body == {
        "user_id": "u1",
        "ts": TS,
        "event_id": "e-42",
        "model_version": "gru-v1",
        "variant": "B",
        "items": [{"item_id": "i1", "score": 0.12346}, {"item_id": "i2", "score": 2.0}],
    }


def test_dead_letter_fields() -> None:
    bad = Invalid(Reason.NOT_JSON, "expected value at line 1")
    with mock.patch("time.time", return_value=TS / 1000):
        text = dlq_message("dlq", InputRecord("events", 3, 17, b"k", b"{nope", 0.0), bad)
        binary = dlq_message("dlq", InputRecord("events", 0, 5, None, b"\xff\x00", 0.0), bad)
    assert (text.topic, text.key, text.partition) == ("dlq", b"k", None)
    body = orjson.loads(text.value)
    assert list(body) == [f.name for f in dataclasses.fields(DeadLetter)]
    assert body == {
        "error": "not_json",
        "detail": "expected value at line 1",
        "raw": "{nope",
        "raw_encoding": "utf-8",
        "topic": "events",
        "partition": 3,
        "offset": 17,
        "ts": TS,
    }
    # Not UTF-8: kept as hex; a record without a key is dead-lettered with an empty key.
    assert binary.key == b""
    hexed = orjson.loads(binary.value)
    assert (hexed["raw"], hexed["raw_encoding"], hexed["offset"]) == ("ff00", "hex", 5)


def test_scenario_feed_extends_the_recommendation_fields() -> None:
    last = make_event("u1", EventType.SEARCH, TS, query="lamp", event_id="e-7")
    items = feed_entries(
        ["i1"], [0.5], because=[[{"item_id": "i0", "type": "click", "events_ago": 1, "weight": 0.25}]]
    )
    msg = scenario_message("recs", last, "gru-v1", "A", "search", "lamp", items)
    body = orjson.loads(msg.value)
    assert (msg.topic, msg.key) == ("recs", b"u1")
    assert list(body) == [f.name for f in dataclasses.fields(ScenarioFeed)]
    # The plain feed's fields come first, in the same order, so feed consumers read it too.
    plain = [f.name for f in dataclasses.fields(Recommendation) if f.name != "items"]
    assert list(body)[: len(plain)] == plain
    assert body["scenario"] == "search" and body["query"] == "lamp"
    assert body["items"] == [
        {
            "item_id": "i1",
            "score": 0.5,
            "because": [{"item_id": "i0", "type": "click", "events_ago": 1, "weight": 0.25}],
        }
    ]

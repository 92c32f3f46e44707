"""Helpers for broker-free tests of the processing core: a context and input records."""

from __future__ import annotations

from typing import Any

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.process import StreamContext
from behavior_stream.stream.core.records import InputRecord

TOPIC, REPART = "events", "events-by-user"


def core_context(engine: ModelEngine, **extra: Any) -> StreamContext:
    """A context over an in-memory store; `extra` overrides any field (topics, top_k, split, ...)."""
    options: dict[str, Any] = {
        "store": {},
        "input_topic": TOPIC,
        "repartition_topic": REPART,
        "representations_topic": "reps",
        "recommendations_topic": "recs",
        "dlq_topic": "dlq",
        "top_k": 10,
    }
    options.update(extra)
    return StreamContext(engine=engine, **options)


def as_input_records(events: list[Event], start_offset: int = 0, topic: str = TOPIC) -> list[InputRecord]:
    """Events as records of partition 0 of `topic`, keyed by user, from `start_offset` on."""
    return [
        InputRecord(topic, 0, start_offset + i, e.user_id.encode(), e.to_json(), 0.0)
        for i, e in enumerate(events)
    ]

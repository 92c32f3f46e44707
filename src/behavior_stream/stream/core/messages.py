"""The wire schema of the stream's output topics: one type per message, serialised with orjson.

Every message is a JSON object whose keys are the fields below, in this order (orjson writes a
dataclass's fields in definition order). Consumers parse them as plain JSON; these types are the
one definition of what they read, and `outputs.py` is the only place that builds them.

| message          | topic setting            | key         |
|------------------|--------------------------|-------------|
| `Representation` | `representations_topic`  | user id     |
| `Recommendation` | `recommendations_topic`  | user id     |
| `ScenarioFeed`   | `recommendations_topic`  | user id     |
| `DeadLetter`     | `dlq_topic`              | input key   |

The messages are frozen, slotted dataclasses rather than pydantic models: they are built per user
per batch on the hot path, where a dataclass costs about a microsecond over a dict and orjson
serialises it natively. Feed entries are a `TypedDict` (a plain dict at run time): a dataclass
per entry would triple the cost of building a 20-item feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import numpy as np
import orjson

from behavior_stream.schema.events import Reason
from behavior_stream.stream.core.experiment import Variant

RawEncoding = Literal["utf-8", "hex"]
# How a served purchase probability was calibrated (training/calibration.py): Platt scaling, or
# none (the model's raw probability, for checkpoints trained before calibration existed).
Calibration = Literal["platt", "none"]


@dataclass(frozen=True, slots=True)
class Representation:
    """A user's representation after a batch: the model's hidden state, on `representations_topic`."""

    user_id: str
    ts: int  # event time (ms) of the last event applied
    session_id: str  # the producer's session id, else `<user_id>@<session start ms>`
    vector: np.ndarray  # float32 (hidden,): the model's representation of the user
    model_version: str  # checkpoint that produced the state
    variant: Variant  # A/B arm serving this user ("A" without an experiment)
    events_seen: int  # events applied to this user's state since it was created
    # P(the current session still ends in a purchase): Platt-calibrated on the training run's
    # validation part ("platt"), or the model's raw probability for checkpoints without it ("none").
    purchase_probability: float | None = None
    purchase_calibration: Calibration = "none"

    def to_json(self) -> bytes:
        """The message value: UTF-8 JSON, the vector as an array of numbers."""
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_NUMPY)


class Because(TypedDict):
    """One of the user's recent events named as a reason for a recommended item (explain.py)."""

    item_id: str
    type: str  # the event's type, e.g. "click"
    events_ago: int  # 0 = the user's latest event (counted over the stored history window)
    weight: float  # the item's score drop when this event is left out, rounded to 5 decimals


class ScoredItem(TypedDict):
    """One entry of a feed."""

    item_id: str
    score: float  # the model's score (trending count for cold users), rounded to 5 decimals
    # Only on items newer than the model (always true then): score is their co-visit count or
    # trending count (see stream/core/fresh_items.py); such entries come last.
    fresh: NotRequired[bool]
    # Only when explanations are asked for (`?explain=true`, `explain_records`): the events that
    # drove the item most, most important first (may be empty).
    because: NotRequired[list[Because]]


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A user's top-K feed after a batch, on `recommendations_topic`."""

    user_id: str
    ts: int  # event time (ms) of the last event applied
    event_id: str  # id of that event: the feed answers it
    model_version: str
    variant: Variant
    items: list[ScoredItem]  # best first; at most `top_k`, purchased/carted/recent left out per `exclude`

    def to_json(self) -> bytes:
        """The message value: UTF-8 JSON."""
        return orjson.dumps(self)


Scenario = Literal["search", "cart"]


@dataclass(frozen=True, slots=True)
class ScenarioFeed:
    """A scenario's feed after a batch with a search or an add_to_cart, on `recommendations_topic`.

    Its fields extend `Recommendation`'s (same first five, `items` last), so a consumer of plain
    feeds reads it too; `scenario` tells them apart.
    """

    user_id: str
    ts: int
    event_id: str  # the search or add_to_cart event it answers
    model_version: str
    variant: Variant
    scenario: Scenario
    query: str | None  # the search's query; None for cart
    items: list[ScoredItem]  # best first; for cart never the carted items

    def to_json(self) -> bytes:
        """The message value: UTF-8 JSON."""
        return orjson.dumps(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input record rejected by validation, on `dlq_topic`, with where it came from."""

    error: Reason  # serialised as its value, e.g. "not_json"
    detail: str  # human-readable reason
    raw: str  # the record's value: as text when UTF-8, else hex ("" for a tombstone)
    raw_encoding: RawEncoding
    topic: str  # input topic, partition and offset of the rejected record
    partition: int
    offset: int
    ts: int  # wall-clock time (ms) of rejection, not event time: the record may have none

    def to_json(self) -> bytes:
        """The message value: UTF-8 JSON."""
        return orjson.dumps(self)

"""Output records of the stream: dead letters, representations and recommendation feeds."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from behavior_stream.schema.events import Event, Invalid
from behavior_stream.stream.core.experiment import Variant
from behavior_stream.stream.core.messages import (
    Because,
    Calibration,
    DeadLetter,
    RawEncoding,
    Recommendation,
    Representation,
    Scenario,
    ScenarioFeed,
    ScoredItem,
)
from behavior_stream.stream.core.records import InputRecord, OutMessage
from behavior_stream.stream.core.state import UserState, session_label

# Which items a feed leaves out (the `exclude` setting); the core defines it, settings use it.
ExcludePolicy = Literal["recent", "carted", "purchased"]


def dlq_message(dlq_topic: str, rec: InputRecord, bad: Invalid) -> OutMessage:
    """The dead-letter record of an invalid input record (raw bytes kept, hex if not UTF-8)."""
    raw = rec.value or b""
    encoding: RawEncoding
    try:
        raw_text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, encoding = raw.hex(), "hex"
    body = DeadLetter(
        error=bad.reason,
        detail=bad.detail,
        raw=raw_text,
        raw_encoding=encoding,
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        ts=int(time.time() * 1000),
    )
    return OutMessage(dlq_topic, rec.key or b"", body.to_json(), None)


def excluded_items(exclude: Iterable[ExcludePolicy], st: UserState) -> set[int]:
    """Catalog items the feed policy (`exclude` setting) leaves out of this user's feed."""
    policy = set(exclude)
    out: set[int] = set()
    if "purchased" in policy:
        out.update(st.purchased)
    if "carted" in policy:
        out.update(st.carted)
    if "recent" in policy:
        out.update(int(i) for i in st.history if i >= 0)
    return out


def feed_entries(
    item_ids: list[str],
    scores: list[float],
    fresh: Sequence[tuple[str, float]] = (),
    because: Sequence[list[Because]] | None = None,
) -> list[ScoredItem]:
    """A feed's entries: the model's items, then the fresh items (marked, see fresh_items.py);
    with `because` (one list per model item), each model item carries its explanation."""
    # Feed entries stay plain dicts (typed by ScoredItem): this loop runs top_k times per user.
    items: list[ScoredItem] = [
        {"item_id": i, "score": round(s, 5)} for i, s in zip(item_ids, scores, strict=True)
    ]
    if because is not None:
        for entry, reasons in zip(items, because, strict=True):
            entry["because"] = reasons
    items.extend({"item_id": i, "score": round(s, 5), "fresh": True} for i, s in fresh)
    return items


def scenario_message(
    topic: str,
    last: Event,
    model_version: str,
    variant: Variant,
    scenario: Scenario,
    query: str | None,
    items: list[ScoredItem],
) -> OutMessage:
    """The scenario feed (search or cart) of one user after a batch, answering event `last`."""
    body = ScenarioFeed(
        user_id=last.user_id,
        ts=last.ts,
        event_id=last.event_id,
        model_version=model_version,
        variant=variant,
        scenario=scenario,
        query=query,
        items=items,
    )
    return OutMessage(topic, last.user_id.encode("utf-8"), body.to_json())


def user_messages(
    topics: tuple[str, str],
    st: UserState,
    last: Event,
    model_version: str,
    variant: Variant,
    item_ids: list[str],
    scores: list[float],
    vector: np.ndarray,
    fresh: Sequence[tuple[str, float]] = (),
    intent: tuple[float, Calibration] | None = None,
    because: Sequence[list[Because]] | None = None,
) -> tuple[OutMessage, OutMessage]:
    """The representation and recommendation messages of one user after a batch; `intent` is
    the user's (purchase probability, calibration), `because` the model items' explanations."""
    key = last.user_id.encode("utf-8")
    rep = Representation(
        user_id=last.user_id,
        ts=last.ts,
        session_id=session_label(last.user_id, st),
        vector=vector,
        model_version=model_version,
        variant=variant,
        events_seen=st.events_seen,
        purchase_probability=None if intent is None else intent[0],
        purchase_calibration="none" if intent is None else intent[1],
    )
    items = feed_entries(item_ids, scores, fresh, because)
    recs = Recommendation(
        user_id=last.user_id,
        ts=last.ts,
        event_id=last.event_id,
        model_version=model_version,
        variant=variant,
        items=items,
    )
    return OutMessage(topics[0], key, rep.to_json()), OutMessage(topics[1], key, recs.to_json())

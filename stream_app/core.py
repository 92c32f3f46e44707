"""The processing core: one plain function from a batch of Kafka records to outputs and state.

Validate every record (bad ones become DLQ messages), re-route records not keyed by user,
drop redelivered/re-sent/late events, evaluate the previous feed (test-then-train), run ONE
batched model step for all users, score, and build the output messages and state writes.
Faust is only the runtime around it (see `agents.py`), so benchmarks and other runtimes can
call `process_batch` directly.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import numpy as np
import orjson

from model.events import TYPE_INDEX, Event, EventType, Invalid, Reason, parse_event
from stream_app.engine import ModelEngine
from stream_app.records import BatchResult, InputRecord, OutMessage
from stream_app.settings import ExcludePolicy
from stream_app.state import UserState, decode_state, encode_state, user_key
from stream_app.trending import TrendingWindow

MAX_EXCLUDED = 8  # carted/purchased items remembered per user for the feed policy
EMPTY_VALUE = Invalid(Reason.NOT_JSON, "empty record value (tombstone)")


@dataclass
class StreamContext:
    """Everything `process_batch` reads or updates besides the records themselves."""

    engine: ModelEngine
    store: MutableMapping[bytes, bytes]  # user_key -> encoded UserState (the Faust table's data)
    input_topic: str
    repartition_topic: str
    representations_topic: str
    recommendations_topic: str
    dlq_topic: str
    top_k: int = 20
    exclude: tuple[ExcludePolicy, ...] = ("purchased",)
    late_grace_ms: int = 60_000
    recent_ids: int = 8
    trending: TrendingWindow = field(default_factory=TrendingWindow)
    # The last feed sent to each user, for test-then-train evaluation; memory only (a restart
    # just skips the first prediction of each user).
    feeds: dict[str, list[int]] = field(default_factory=dict)
    stream_time: int = 0  # the largest event time applied so far (the clock of TTL eviction)


def dlq_message(ctx: StreamContext, rec: InputRecord, bad: Invalid) -> OutMessage:
    """The dead-letter record for an invalid input record."""
    raw = rec.value or b""
    try:
        raw_text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, encoding = raw.hex(), "hex"
    body = {
        "error": bad.reason.value,
        "detail": bad.detail,
        "raw": raw_text,
        "raw_encoding": encoding,
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "ts": int(time.time() * 1000),
    }
    return OutMessage(ctx.dlq_topic, rec.key or b"", orjson.dumps(body), None)


def _event_hash(event_id: str) -> int:
    return zlib.crc32(event_id.encode("utf-8"))


def _admit(ctx: StreamContext, st: UserState, rec: InputRecord, ev: Event) -> str | None:
    """Record the offset and decide: None to apply, or why the event is skipped."""
    repart = rec.topic == ctx.repartition_topic
    last = st.last_offset_repart if repart else st.last_offset
    if rec.offset <= last:
        return "redelivered"
    if repart:
        st.last_offset_repart = rec.offset
    else:
        st.last_offset = rec.offset
    h = _event_hash(ev.event_id)
    if h in st.recent_ids:
        return "duplicate"
    if st.last_ts >= 0 and ev.ts < st.last_ts - ctx.late_grace_ms:
        return "late"
    st.recent_ids.append(h)
    del st.recent_ids[: -ctx.recent_ids]
    return None


def _apply_bookkeeping(ctx: StreamContext, st: UserState, ev: Event, gap_ms: int) -> None:
    """Session window, counters and feed-policy sets (the model part is stepped in batch)."""
    new_session = st.last_ts < 0 or ev.ts - st.last_ts > gap_ms
    if ev.session_id is not None and ev.session_id != st.session_id:
        new_session = True
    if new_session:
        st.session_start = ev.ts
        st.session_id = ev.session_id or f"{ev.user_id}@{ev.ts}"
        st.session_counts = [0] * len(st.session_counts)
    st.session_counts[TYPE_INDEX[ev.type]] += 1
    st.events_seen += 1
    st.last_ts = ev.ts
    st.last_seen_ms = int(time.time() * 1000)
    idx = ctx.engine.vocab.index(ev.item_id)
    if idx is not None:
        if ev.type is EventType.ADD_TO_CART:
            st.carted = [*(i for i in st.carted if i != idx), idx][-MAX_EXCLUDED:]
        elif ev.type is EventType.PURCHASE:
            st.purchased = [*(i for i in st.purchased if i != idx), idx][-MAX_EXCLUDED:]


def _online_rank(ctx: StreamContext, ev: Event) -> int | bool | None:
    """Rank of the event's item in the user's previous feed; None = miss; False = not evaluable."""
    feed = ctx.feeds.get(ev.user_id)
    idx = ctx.engine.vocab.index(ev.item_id)
    if feed is None or ev.item_id is None or idx is None:
        return False
    try:
        return feed.index(idx) + 1
    except ValueError:
        return None


def excluded_items(ctx: StreamContext, st: UserState) -> set[int]:
    """Catalog items the feed policy (`exclude` setting) leaves out of this user's feed."""
    out: set[int] = set()
    if "purchased" in ctx.exclude:
        out.update(st.purchased)
    if "carted" in ctx.exclude:
        out.update(st.carted)
    if "recent" in ctx.exclude:
        out.update(int(i) for i in st.history if i >= 0)
    return out


def process_batch(records: list[InputRecord], ctx: StreamContext) -> BatchResult:
    """Process one micro-batch; see the module docstring. Never raises on bad input."""
    result = BatchResult()
    stats = result.stats
    stats.records = len(records)
    states: dict[str, UserState] = {}
    partitions: dict[str, int] = {}
    pending: dict[str, list[Event]] = {}
    received: dict[str, float] = {}
    base_ts: dict[str, int] = {}  # each user's last event time before this batch, for the model
    engine = ctx.engine
    gap_ms = engine.config.session_gap_ms
    for rec in records:
        wm_key = (rec.topic, rec.partition)
        result.watermarks[wm_key] = max(result.watermarks.get(wm_key, -1), rec.offset)
        parsed = parse_event(rec.value) if rec.value is not None else EMPTY_VALUE
        if isinstance(parsed, Invalid):
            stats.invalid_by_reason[parsed.reason.value] += 1
            result.messages.append(dlq_message(ctx, rec, parsed))
            continue
        ev = parsed
        if rec.topic == ctx.input_topic and rec.key != ev.user_id.encode("utf-8"):
            # Not keyed by user: hand it to the partition that owns the user's state.
            stats.rerouted += 1
            value = rec.value or b""
            result.messages.append(OutMessage(ctx.repartition_topic, ev.user_id.encode("utf-8"), value))
            continue
        st = states.get(ev.user_id)
        if st is None:
            raw = ctx.store.get(user_key(ev.user_id))
            st = decode_state(raw) if raw is not None else engine.fresh_state()
            states[ev.user_id] = st
            partitions[ev.user_id] = rec.partition
            base_ts[ev.user_id] = st.last_ts
        skip = _admit(ctx, st, rec, ev)
        if skip is not None:
            if skip == "late":
                stats.late += 1
            else:
                stats.duplicates += 1
            continue
        rank = _online_rank(ctx, ev)
        if rank is not False:
            stats.ranks.append(rank if isinstance(rank, int) else None)
        _apply_bookkeeping(ctx, st, ev, gap_ms)
        pending.setdefault(ev.user_id, []).append(ev)
        received[ev.user_id] = rec.received
        stats.events_by_type[ev.type.value] += 1
        ctx.stream_time = max(ctx.stream_time, ev.ts)
    ctx.trending.add(e for evs in pending.values() for e in evs)
    users = list(pending)
    if users:
        t0 = time.perf_counter()
        stats.steps = engine.step_users(
            [states[u] for u in users], [pending[u] for u in users], [base_ts[u] for u in users]
        )
        t1 = time.perf_counter()
        feeds = engine.recommend(
            [states[u] for u in users],
            [excluded_items(ctx, states[u]) for u in users],
            ctx.top_k,
            ctx.trending,
        )
        stats.score_seconds = time.perf_counter() - t1
        stats.step_seconds = t1 - t0
        for user, (items, scores, vector) in zip(users, feeds, strict=True):
            _emit(ctx, result, user, states[user], pending[user][-1], items, scores, vector)
            stats.received.append(received[user])
    stats.users = len(states)
    stats.recommendations = len(users)
    for user, st in states.items():
        result.state_writes.setdefault(partitions[user], {})[user_key(user)] = encode_state(st)
        ctx.store[user_key(user)] = result.state_writes[partitions[user]][user_key(user)]
    return result


def _emit(
    ctx: StreamContext,
    result: BatchResult,
    user: str,
    st: UserState,
    last: Event,
    items: list[int],
    scores: list[float],
    vector: np.ndarray,
) -> None:
    """Append the representation and recommendation messages of one user."""
    engine = ctx.engine
    ctx.feeds[user] = items
    key = user.encode("utf-8")
    rep = {
        "user_id": user,
        "ts": last.ts,
        "session_id": st.session_id,
        "vector": vector,
        "model_version": engine.version,
        "events_seen": st.events_seen,
    }
    recs = {
        "user_id": user,
        "ts": last.ts,
        "event_id": last.event_id,
        "model_version": engine.version,
        "items": [
            {"item_id": item_id, "score": round(score, 5)}
            for item_id, score in zip(engine.vocab.lookup(items), scores, strict=True)
        ],
    }
    result.messages.append(
        OutMessage(ctx.representations_topic, key, orjson.dumps(rep, option=orjson.OPT_SERIALIZE_NUMPY))
    )
    result.messages.append(OutMessage(ctx.recommendations_topic, key, orjson.dumps(recs)))

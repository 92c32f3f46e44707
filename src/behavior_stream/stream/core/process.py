"""The processing core: one plain function from a batch of Kafka records to outputs and state.

Validate every record (bad ones become DLQ messages), re-route records not keyed by user,
drop redelivered/re-sent/late events, evaluate the previous feed (test-then-train), run ONE
batched model step for all users of each served model (variant), score, and build the output
messages and state writes.
Faust is only the runtime around it (see `agents.py`), so benchmarks and other runtimes can
call `process_batch` directly.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from behavior_stream.schema.events import TYPE_INDEX, Event, EventType, Invalid, Reason, parse_event
from behavior_stream.schema.sessions import session_boundary, session_key
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import Variant, variant_of
from behavior_stream.stream.core.explain import explain
from behavior_stream.stream.core.fresh_items import (
    FreshItems,
    excluded_fresh,
    previous_visit,
)
from behavior_stream.stream.core.intent import intents_of
from behavior_stream.stream.core.outputs import ExcludePolicy, dlq_message, excluded_items, user_messages
from behavior_stream.stream.core.records import BatchResult, BatchStats, InputRecord, OutMessage
from behavior_stream.stream.core.scenarios import ScenarioOptions, rank_batch, scenario_outputs
from behavior_stream.stream.core.state import UserState, decode_state, encode_state, user_key
from behavior_stream.stream.core.trending import TrendingWindow

MAX_EXCLUDED = 8  # carted/purchased items remembered per user for the feed policy
EMPTY_VALUE = Invalid(Reason.NOT_JSON, "empty record value (tombstone)")


@dataclass(slots=True)
class ServedFeed:
    """The last feed sent to a user: which model made it, its items, and the event time."""

    tag: int
    items: list[int]
    ts: int


@dataclass
class StreamContext:
    """Everything `process_batch` reads or updates besides the records themselves."""

    engine: ModelEngine  # variant A, the control (and the only one without an experiment)
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
    treatment: ModelEngine | None = None  # variant B of an online A/B test
    split: float = 0.0  # share of users (by stable hash) served by the treatment
    # Also rank each event's item from the model state just before it: the offline protocol,
    # comparable to `evaluate` whatever the batching (one catalog scoring per event).
    rank_each_event: bool = False
    # The last feed sent to each user, for test-then-train evaluation; memory only (a restart
    # just skips the first prediction of each user).
    feeds: dict[str, ServedFeed] = field(default_factory=dict)
    stream_time: int = 0  # the largest event time applied so far (the clock of TTL eviction)
    # Feed places reserved for items newer than the model (fresh_items.py); 0 turns it off. The
    # core's default is off so direct callers keep model-only feeds; the worker's setting is 2.
    fresh_slots: int = 0
    fresh: FreshItems = field(default_factory=FreshItems)
    # Search/cart records and explanations (scenarios.py); off for direct callers of the core,
    # like fresh_slots: the worker's settings turn the records on.
    scenarios: ScenarioOptions = field(default_factory=lambda: ScenarioOptions(search=False, cart=False))

    def engine_for(self, user_id: str) -> tuple[Variant, ModelEngine]:
        """The variant serving a user and its model."""
        if self.treatment is not None and variant_of(user_id, self.split) == "B":
            return "B", self.treatment
        return "A", self.engine

    def engines(self) -> dict[str, ModelEngine]:
        """Served models by variant."""
        return {"A": self.engine} if self.treatment is None else {"A": self.engine, "B": self.treatment}


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


def _apply_bookkeeping(engine: ModelEngine, st: UserState, ev: Event) -> None:
    """Session window, counters and feed-policy sets (the model part is stepped in batch)."""
    prev_ts = st.last_ts if st.last_ts >= 0 else None
    if session_boundary(prev_ts, st.session_id, ev.ts, ev.session_id, engine.config.session_gap_ms):
        st.session_start = ev.ts
        st.session_counts = [0] * len(st.session_counts)
    # The last event's id, as compared and stored ("": none, the label is then derived from the
    # start, see session_label): the session rule compares the next event with it.
    st.session_id = session_key(ev.session_id)
    st.session_counts[TYPE_INDEX[ev.type]] += 1
    st.events_seen += 1
    st.last_ts = ev.ts
    st.last_seen_ms = int(time.time() * 1000)
    idx = engine.vocab.index(ev.item_id)
    if idx is not None:
        if ev.type is EventType.ADD_TO_CART:
            st.carted = [*(i for i in st.carted if i != idx), idx][-MAX_EXCLUDED:]
        elif ev.type is EventType.PURCHASE:
            st.purchased = [*(i for i in st.purchased if i != idx), idx][-MAX_EXCLUDED:]


def _test_then_train(
    ctx: StreamContext, ev: Event, variant: str, engine: ModelEngine, stats: BatchStats
) -> None:
    """Before applying an event, score the user's previous feed against its item."""
    feed = ctx.feeds.get(ev.user_id)
    if feed is None or feed.tag != engine.tag:
        return
    idx = engine.vocab.index(ev.item_id)
    if idx is None:  # search, or an item the model cannot rank
        return
    rank = feed.items.index(idx) + 1 if idx in feed.items else None
    stats.ranks.append((variant, rank))
    stats.rank_users.append(ev.user_id)
    stats.feed_ages.append((variant, max(0, ev.ts - feed.ts) / 1000.0))
    if ev.type is EventType.PURCHASE:
        stats.purchases.append((variant, rank is not None))


def process_batch(records: list[InputRecord], ctx: StreamContext) -> BatchResult:
    """Process one micro-batch; see the module docstring. Never raises on bad input."""
    result = BatchResult()
    stats = result.stats
    stats.records = len(records)
    states: dict[str, UserState] = {}
    partitions: dict[str, int] = {}
    served: dict[str, tuple[Variant, ModelEngine]] = {}
    pending: dict[str, list[Event]] = {}
    received: dict[str, float] = {}
    base_ts: dict[str, int] = {}  # each user's last event time before this batch, for the model
    base_sid: dict[str, str] = {}  # and that event's session id, for the model's new-session flag
    base_visit: dict[str, tuple[int, str, str | None] | None] = {}  # for fresh-item co-visits
    for rec in records:
        wm_key = (rec.topic, rec.partition)
        result.watermarks[wm_key] = max(result.watermarks.get(wm_key, -1), rec.offset)
        parsed = parse_event(rec.value) if rec.value is not None else EMPTY_VALUE
        if isinstance(parsed, Invalid):
            stats.invalid_by_reason[parsed.reason.value] += 1
            result.messages.append(dlq_message(ctx.dlq_topic, rec, parsed))
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
            served[ev.user_id] = ctx.engine_for(ev.user_id)
            raw = ctx.store.get(user_key(ev.user_id))
            st = decode_state(raw) if raw is not None else served[ev.user_id][1].fresh_state()
            states[ev.user_id] = st
            partitions[ev.user_id] = rec.partition
            base_ts[ev.user_id] = st.last_ts
            base_sid[ev.user_id] = st.session_id
            if ctx.fresh_slots:
                engine = served[ev.user_id][1]
                base_visit[ev.user_id] = previous_visit(st, engine.vocab, st.model_tag == engine.tag)
        skip = _admit(ctx, st, rec, ev)
        if skip is not None:
            if skip == "late":
                stats.late += 1
            else:
                stats.duplicates += 1
            continue
        variant, engine = served[ev.user_id]
        _test_then_train(ctx, ev, variant, engine, stats)
        _apply_bookkeeping(engine, st, ev)
        pending.setdefault(ev.user_id, []).append(ev)
        received[ev.user_id] = rec.received
        stats.events_by_type[ev.type.value] += 1
        ctx.stream_time = max(ctx.stream_time, ev.ts)
    # Per input partition, so each partition's window can be persisted and follow it (trending.py).
    ctx.trending.add_partitioned((partitions[u], e) for u, evs in pending.items() for e in evs)
    if ctx.fresh_slots:
        for user, evs in pending.items():
            vocab, gap_ms = served[user][1].vocab, served[user][1].config.session_gap_ms
            ctx.fresh.observe(vocab, evs, base_visit[user], gap_ms)
    by_variant: dict[Variant, list[str]] = {}
    for user in pending:
        by_variant.setdefault(served[user][0], []).append(user)
    for variant, users in sorted(by_variant.items()):
        _step_and_emit(ctx, result, variant, users, states, pending, base_ts, base_sid)
        stats.received.extend(received[u] for u in users)
    stats.users = len(states)
    for user, st in states.items():
        value = encode_state(st)
        result.state_writes.setdefault(partitions[user], {})[user_key(user)] = value
        ctx.store[user_key(user)] = value
    return result


def _step_and_emit(
    ctx: StreamContext,
    result: BatchResult,
    variant: Variant,
    users: list[str],
    states: dict[str, UserState],
    pending: dict[str, list[Event]],
    base_ts: dict[str, int],
    base_sid: dict[str, str],
) -> None:
    """One batched step and one scoring pass for the users of one variant, then their outputs."""
    engine = ctx.engine if variant == "A" or ctx.treatment is None else ctx.treatment
    stats = result.stats
    user_states = [states[u] for u in users]
    t0 = time.perf_counter()
    ranks: list[int] | None = [] if ctx.rank_each_event else None
    events = [pending[u] for u in users]
    # The state after the step, handed on: the feeds, intents and scenario records all rank
    # from it (one `Ranking`) instead of rebuilding it from the written-back user states.
    ms = engine.step_states(
        user_states, events, [base_ts[u] for u in users], ranks, last_session=[base_sid[u] for u in users]
    )
    stats.steps += sum(len(e) for e in events)
    stats.model_ranks.extend((variant, r) for r in ranks or ())
    t1 = time.perf_counter()
    excluded = [excluded_items(ctx.exclude, st) for st in user_states]
    ranked = rank_batch(engine, ms, user_states, events, excluded, ctx.top_k, ctx.scenarios)
    feeds = engine.recommend(user_states, excluded, ctx.top_k, ctx.trending, ranked.users)
    stats.step_seconds += t1 - t0
    stats.score_seconds += time.perf_counter() - t1
    intents = intents_of(engine, ranked.users.top.numpy())  # (n, hidden): the feeds' vectors
    stats.intents.extend(p for p, _ in intents)
    topics = (ctx.representations_topic, ctx.recommendations_topic)
    for user, (items, scores, vector), intent in zip(users, feeds, intents, strict=True):
        last = pending[user][-1]
        skip = excluded_fresh(ctx.exclude, pending[user]) if ctx.fresh_slots else set()
        items, scores, fresh = ctx.fresh.place(
            engine.vocab,
            states[user].history,
            skip,
            ctx.fresh_slots,
            ctx.trending,
            (items, scores),
            ctx.top_k,
        )
        ctx.feeds[user] = ServedFeed(engine.tag, items, last.ts)
        item_ids = engine.vocab.lookup(items)
        because = explain(engine, states[user], items) if ctx.scenarios.explain else None
        feed = (item_ids, scores, vector, fresh, intent, because)
        out = user_messages(topics, states[user], last, engine.version, variant, *feed)
        result.messages.extend(out)
    result.messages.extend(
        scenario_outputs(
            engine,
            variant,
            user_states,
            events,
            excluded,
            ctx.top_k,
            ctx.recommendations_topic,
            ctx.scenarios,
            ranked,
        )
    )
    stats.recommendations += len(users)
    stats.recommendations_by_variant[variant] += len(users)

"""The stream's scenario records: after a batch, a search feed per user who searched and a cart
feed per user who carted, beside the plain feed (see messages.ScenarioFeed).

Search: the batch's last search of the user is answered; when it is also the user's last event,
the live state already holds it and is ranked as is, otherwise a copy of the final state is
stepped with that search (lookahead.py). Cart: the final state (after the cart event) is scored,
blended with the checkpoint's bought-together table, the carted items left out (cart.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from behavior_stream.schema.events import Event, EventType
from behavior_stream.stream.core.cart import cart_rankings
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import Variant
from behavior_stream.stream.core.explain import explain
from behavior_stream.stream.core.lookahead import Ranked, rank_after
from behavior_stream.stream.core.outputs import feed_entries, scenario_message
from behavior_stream.stream.core.records import OutMessage
from behavior_stream.stream.core.state import UserState


@dataclass(frozen=True)
class ScenarioOptions:
    """Which scenario records the stream emits, and how."""

    search: bool = True  # a search feed after a batch with a search
    cart: bool = True  # a cart feed after a batch with an add_to_cart
    explain: bool = False  # explanations on every item of the stream's feeds (costs a replay per user)
    cart_blend: float = 0.5  # the bought-together table's share in cart feeds


def cart_feeds(
    engine: ModelEngine, states: Sequence[UserState], excluded: Sequence[set[int]], k: int, blend: float
) -> list[Ranked]:
    """Cart completions of users whose states are under `engine` (their `carted` is the basket)."""
    if not states:
        return []
    ms = engine.model_state(states)
    top = engine.model.representation(ms)
    baskets = [list(st.carted) for st in states]
    return cart_rankings(
        engine.model, top, ms.history, ms.history_types, engine.bought_together, baskets, excluded, k, blend
    )


def _last_of(events: Sequence[Event], kind: EventType) -> Event | None:
    return next((e for e in reversed(events) if e.type is kind), None)


def scenario_outputs(
    engine: ModelEngine,
    variant: Variant,
    states: Sequence[UserState],
    pending: Sequence[Sequence[Event]],
    excluded: Sequence[set[int]],
    k: int,
    topic: str,
    options: ScenarioOptions,
) -> list[OutMessage]:
    """The search and cart records of one variant's users after their batched step."""
    out: list[OutMessage] = []
    if options.search:
        asked = [
            (i, s) for i, evs in enumerate(pending) if (s := _last_of(evs, EventType.SEARCH)) is not None
        ]
        hypothetical = [[] if pending[i][-1] is s else [s] for i, s in asked]
        ranked = rank_after(
            engine, [states[i] for i, _ in asked], hypothetical, [excluded[i] for i, _ in asked], k
        )
        for (i, s), (items, scores) in zip(asked, ranked, strict=True):
            because = explain(engine, states[i], items) if options.explain else None
            entries = feed_entries(engine.vocab.lookup(items), scores, because=because)
            out.append(scenario_message(topic, s, engine.version, variant, "search", s.query, entries))
    if options.cart:
        carted = [
            (i, c) for i, evs in enumerate(pending) if (c := _last_of(evs, EventType.ADD_TO_CART)) is not None
        ]
        feeds = cart_feeds(
            engine, [states[i] for i, _ in carted], [excluded[i] for i, _ in carted], k, options.cart_blend
        )
        for (i, c), (items, scores) in zip(carted, feeds, strict=True):
            because = explain(engine, states[i], items) if options.explain else None
            entries = feed_entries(engine.vocab.lookup(items), scores, because=because)
            out.append(scenario_message(topic, c, engine.version, variant, "cart", None, entries))
    return out

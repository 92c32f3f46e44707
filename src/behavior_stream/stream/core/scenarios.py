"""The stream's scenario records: after a batch, a search feed per user who searched and a cart
feed per user who carted, beside the plain feed (see messages.ScenarioFeed).

Search: the batch's last search of the user is answered; when it is also the user's last event,
the live state already holds it and is ranked as is, otherwise a copy of the final state is
stepped with that search (lookahead.py). Cart: the final state (after the cart event) is scored,
blended with the checkpoint's bought-together table, the carted items left out (cart.py).
In the stream both start from the batch's state after its step (`rank_batch`): the searches
are ranked in the same index call as the feeds, the carts from the feeds' representations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import Event, EventType
from behavior_stream.stream.core.cart import cart_rankings
from behavior_stream.stream.core.engine import ModelEngine, Ranking
from behavior_stream.stream.core.experiment import Variant
from behavior_stream.stream.core.explain import explain
from behavior_stream.stream.core.lookahead import Ranked, kept, rank_after, stepped_rows
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
    engine: ModelEngine,
    states: Sequence[UserState],
    excluded: Sequence[set[int]],
    k: int,
    blend: float,
    ranking: Ranking | None = None,
    rows: Sequence[int] | None = None,
) -> list[Ranked]:
    """Cart completions of users whose states are under `engine` (their `carted` is the basket).

    With `ranking` (the batch's current state, see `ModelEngine.rank`), `states` are its rows
    `rows`, and the model state is taken from it rather than built again.
    """
    if not states:
        return []
    if ranking is None:
        ms = engine.model_state(states)
        top, history, types = engine.model.representation(ms), ms.history, ms.history_types
    else:
        assert rows is not None and len(rows) == len(states)
        sel = torch.tensor(list(rows), dtype=torch.int64)
        top, history, types = ranking.top[sel], ranking.state.history[sel], ranking.state.history_types[sel]
    baskets = [list(st.carted) for st in states]
    table = engine.bought_together
    return cart_rankings(engine.model, top, history, types, table, baskets, excluded, k, blend)


def _last_of(events: Sequence[Event], kind: EventType) -> Event | None:
    return next((e for e in reversed(events) if e.type is kind), None)


def _searches(pending: Sequence[Sequence[Event]]) -> list[tuple[int, Event]]:
    """(user row, last search) of each user who searched in the batch."""
    return [(i, s) for i, evs in enumerate(pending) if (s := _last_of(evs, EventType.SEARCH)) is not None]


class BatchRanking(NamedTuple):
    """`rank_batch`'s result: the users' ranking and the answers to their searches."""

    users: Ranking  # row i: user i's current state
    searches: list[tuple[int, Event, Ranked]]  # (user row, its batch's last search, answer)


@torch.inference_mode()
def rank_batch(
    engine: ModelEngine,
    ms: ModelState,
    states: Sequence[UserState],
    pending: Sequence[Sequence[Event]],
    excluded: Sequence[set[int]],
    k: int,
    options: ScenarioOptions,
) -> BatchRanking:
    """Rank one variant's users from their batched state `ms` after the step, and answer their
    searches: the same as `ModelEngine.rank` plus `rank_after` per search, in fewer calls.

    A search that is the user's last event is already in the live state: its answer is the
    user's own row. Otherwise the row is stepped with the search and ranked in the same index
    call as the users. Both hold only while the searches' `ItemIndex.extra` (HNSW candidates
    beyond k) equals the whole batch's, as results depend on it; else they are ranked apart.
    """
    asked = [] if not options.search else _searches(pending)
    if not asked:
        return BatchRanking(engine.rank(ms, excluded, k), [])
    asked_ex = [excluded[i] for i, _ in asked]
    extra = engine.index.extra(asked_ex)
    shared = not engine.index.approximate or extra == engine.index.extra(excluded)
    # Rows of the ranked states answering each search: idle ones (search last) first.
    idle = [j for j, (i, s) in enumerate(asked) if pending[i][-1] is s]
    moving = [j for j, (i, s) in enumerate(asked) if pending[i][-1] is not s]
    parts: list[ModelState] = []  # states to rank beside the users'
    part_ex: list[set[int]] = []
    answer_row: dict[int, int] = {}  # search j -> its row in those states
    if not shared and idle:
        answer_row.update({j: n for n, j in enumerate(idle)})
        parts.append(ms.select(torch.tensor([asked[j][0] for j in idle], dtype=torch.int64)))
        part_ex.extend(asked_ex[j] for j in idle)
    if moving:
        answer_row.update({j: len(part_ex) + n for n, j in enumerate(moving)})
        rows = [asked[j][0] for j in moving]
        hypothetical = [[asked[j][1]] for j in moving]
        parts.append(stepped_rows(engine, ms, rows, [states[i] for i in rows], hypothetical))
        part_ex.extend(asked_ex[j] for j in moving)
    n = len(states)
    if shared and parts:  # one index call for the users and the stepped searches
        both = engine.rank(ModelState.cat([ms, *parts]), [*excluded, *part_ex], k)
        users = Ranking(ms, both.top[:n], both.items[:n], both.scores[:n], both.extra)
        # Shared: the idle searches are answered by the users' rows, so parts is the moving ones.
        extra_rows = Ranking(parts[0], both.top[n:], both.items[n:], both.scores[n:], both.extra)
    else:
        users = engine.rank(ms, excluded, k)
        extra_rows = engine.rank(ModelState.cat(parts), part_ex, k) if parts else users
    searches = []
    for j, (i, s) in enumerate(asked):
        src, row = (users, i) if j not in answer_row else (extra_rows, answer_row[j])
        searches.append((i, s, kept(src.items[row], src.scores[row])))
    return BatchRanking(users, searches)


def scenario_outputs(
    engine: ModelEngine,
    variant: Variant,
    states: Sequence[UserState],
    pending: Sequence[Sequence[Event]],
    excluded: Sequence[set[int]],
    k: int,
    topic: str,
    options: ScenarioOptions,
    ranked: BatchRanking | None = None,
) -> list[OutMessage]:
    """The search and cart records of one variant's users after their batched step.

    `ranked`: `rank_batch` of these states with these `excluded`, `k` and `options` (what the
    stream's feeds came from); the records are then ranked from it, not from rebuilt states.
    """
    out: list[OutMessage] = []
    if options.search:
        if ranked is None:
            asked = _searches(pending)
            # A search that is the user's last event is already in the live state: nothing to step.
            hypothetical = [[] if pending[i][-1] is s else [s] for i, s in asked]
            ranked_searches = rank_after(
                engine, [states[i] for i, _ in asked], hypothetical, [excluded[i] for i, _ in asked], k
            )
            answers = [(i, s, r) for (i, s), r in zip(asked, ranked_searches, strict=True)]
        else:
            answers = ranked.searches
        for i, s, (items, scores) in answers:
            because = explain(engine, states[i], items) if options.explain else None
            entries = feed_entries(engine.vocab.lookup(items), scores, because=because)
            out.append(scenario_message(topic, s, engine.version, variant, "search", s.query, entries))
    if options.cart:
        carted = [
            (i, c) for i, evs in enumerate(pending) if (c := _last_of(evs, EventType.ADD_TO_CART)) is not None
        ]
        rows = [i for i, _ in carted]
        feeds = cart_feeds(
            engine,
            [states[i] for i in rows],
            [excluded[i] for i in rows],
            k,
            options.cart_blend,
            None if ranked is None else ranked.users,
            rows if ranked is not None else None,
        )
        for (i, c), (items, scores) in zip(carted, feeds, strict=True):
            because = explain(engine, states[i], items) if options.explain else None
            entries = feed_entries(engine.vocab.lookup(items), scores, because=because)
            out.append(scenario_message(topic, c, engine.version, variant, "cart", None, entries))
    return out

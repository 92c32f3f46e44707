"""Explanations: which of the user's recent events drove each recommended item (leave-one-out).

The stored state keeps the last `repeat_window` events (item and type), not the whole past, so
the explanation works over that window: the window is replayed from a fresh state once in full
and once without each event (one batched forward of m + 1 sequences), and an event's weight for
an item is how much the item's score drops when the event is left out. Search events are left
out of the replay (the window keeps no query, as in `ModelEngine.adopt`). This captures the
repeat bonus (an item seen before), the last-item shortcut and the recurrent path alike; the
events with the largest positive weights are named, most important first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from behavior_stream.nn.rules import term_at
from behavior_stream.schema.events import EVENT_TYPES, Event, EventType, make_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.lookahead import stepped_copies
from behavior_stream.stream.core.messages import Because
from behavior_stream.stream.core.state import UserState

MAX_REASONS = 3
# Events left out one at a time: the most recent ones of the window. Each costs one more replayed
# sequence, and the replay's encoding dominates an explanation's time (12: ~10 ms at window 32).
MAX_LEFT_OUT = 12


def _window(engine: ModelEngine, st: UserState) -> list[tuple[int, int, int]]:
    """(catalog index, type index, events ago) of the replayable events of the window, oldest first."""
    hist, types = st.history.tolist(), st.history_types.tolist()
    n = len(hist)
    return [
        (idx, t, n - 1 - pos)
        for pos, (idx, t) in enumerate(zip(hist, types, strict=True))
        if idx >= 0 and EVENT_TYPES[t] is not EventType.SEARCH
    ]


@torch.inference_mode()
def leave_one_out(engine: ModelEngine, st: UserState, items: Sequence[int]) -> torch.Tensor:
    """(c, len(items)) score drop of each item when candidate event j is left out: the last
    `MAX_LEFT_OUT` replayable window events, oldest first (`_candidates`)."""
    window = _window(engine, st)
    m = len(window)
    first = max(0, m - MAX_LEFT_OUT)
    if m == 0 or not items:
        return torch.zeros(m - first, len(items))
    ts = max(st.last_ts, 0)
    evs = [make_event("u", EVENT_TYPES[t], ts, engine.vocab.items[idx]) for idx, t, _ in window]
    variants: list[list[Event]] = [evs, *([e for i, e in enumerate(evs) if i != j] for j in range(first, m))]
    # Replayed with the stream's own batched step (m == 1 leaves a fresh user without it).
    replayed = stepped_copies(engine, [engine.fresh_state()] * len(variants), variants)
    ms = engine.model_state(replayed)
    scores = item_scores(engine, ms.h[-1], ms.history, ms.history_types, list(items))  # (m + 1, k)
    return scores[0:1] - scores[1:]  # (m, k)


def item_scores(
    engine: ModelEngine, top: torch.Tensor, history: torch.Tensor, types: torch.Tensor, items: list[int]
) -> torch.Tensor:
    """(n, len(items)) the model's scores of just these items (what `score_hidden` gives for their
    columns) from top states (n, hidden) and history windows (n, window), without scoring the catalog."""
    model = engine.model
    cols = torch.tensor(items, dtype=torch.int64)
    base = model.item_query(top, history) @ model.item_vectors(cols).T + model.item_bias[cols]  # (n, k)
    bonus = model.repeat_bonus(top, history, types)  # (n, window)
    base = base + ((history[:, :, None] == cols[None, None, :]) * bonus[:, :, None]).sum(1)
    rules = model.rules(history)
    return base if rules is None else base + term_at(*rules, cols.expand(len(top), -1))


def explain(
    engine: ModelEngine, st: UserState, items: Sequence[int], top_n: int = MAX_REASONS
) -> list[list[Because]]:
    """Per item, up to `top_n` of the user's last `MAX_LEFT_OUT` replayable events whose removal
    lowers its score most (positive drops only)."""
    window = _window(engine, st)[-MAX_LEFT_OUT:]
    drops = leave_one_out(engine, st, items)  # (c, k)
    out: list[list[Because]] = []
    for col in range(len(items)):
        order = torch.argsort(drops[:, col], descending=True).tolist() if len(window) else []
        reasons: list[Because] = []
        for j in order[:top_n]:
            weight = float(drops[j, col])
            if weight <= 1e-6:
                break
            idx, t, ago = window[j]
            reasons.append(
                {
                    "item_id": engine.vocab.items[idx],
                    "type": EVENT_TYPES[t].value,
                    "events_ago": ago,
                    "weight": round(weight, 5),
                }
            )
        out.append(reasons)
    return out

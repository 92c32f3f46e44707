"""Shopping scenarios offline: which predictions each scenario makes, its baselines and metrics.

Pure functions over events and score matrices (the model runs in `scenario_eval.py`):

- search: each test position right after a search whose event has a catalog item (the item
  clicked after the query); baseline: items clicked right after the same (normalised) query in
  training, ties by popularity ("query-only").
- cart: each test add_to_cart followed, in the same session, by other items being carted or
  bought (not carted so far); those are the targets; baseline: bought-together counts of the
  carted items.
- related: consecutive distinct item pairs (i, j) of a test session; rank j given only i;
  baseline: session co-occurrence counts of i.
- purchase intent: at each test position, whether the current session still has a purchase.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from behavior_stream.data.splits import EvalSequence, group_by_user
from behavior_stream.schema.events import Event, EventType
from behavior_stream.schema.sessions import SESSION_GAP_MS, is_new_session
from behavior_stream.schema.vocab import ItemVocab

BASKET = (EventType.ADD_TO_CART, EventType.PURCHASE)


def normalise_query(query: str | None) -> str:
    """The query as the baselines compare it: lower case, single spaces."""
    return " ".join((query or "").lower().split())


def sessions_of(events: Sequence[Event], gap_ms: int = SESSION_GAP_MS) -> list[list[Event]]:
    """One user's events cut into sessions (`schema.sessions` rule)."""
    out: list[list[Event]] = []
    for i, ev in enumerate(events):
        if not out or is_new_session(events[i - 1] if i else None, ev, gap_ms):
            out.append([])
        out[-1].append(ev)
    return out


def bought_together(
    events: Iterable[Event], top_n: int = 20, gap_ms: int = SESSION_GAP_MS
) -> dict[str, list[list[str | int]]]:
    """Per item, its `top_n` partners by the number of sessions whose basket (carted or bought
    items) held both; plain lists `[[partner, count], ...]`, best first (the checkpoint table)."""
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    for evs in group_by_user(sorted(events, key=lambda e: e.ts)).values():
        for session in sessions_of(evs, gap_ms):
            basket = sorted({e.item_id for e in session if e.type in BASKET and e.item_id is not None})
            for a in basket:
                for b in basket:
                    if a != b:
                        pairs[a][b] += 1
    return {
        a: [[b, c] for b, c in sorted(cnt.items(), key=lambda x: (-x[1], x[0]))[:top_n]]
        for a, cnt in pairs.items()
    }


def table_scores(
    table: dict[str, list[list[str | int]]], basket: Sequence[str], vocab: ItemVocab
) -> np.ndarray:
    """(n_items,) summed bought-together counts of the basket's items."""
    out = np.zeros(vocab.n_items)
    for item in basket:
        for partner, count in table.get(item, []):
            idx = vocab.index(str(partner))
            if idx is not None:
                out[idx] += float(count)
    return out


def cart_blend(model_scores: np.ndarray, counts: np.ndarray, blend: float) -> np.ndarray:
    """(n, n_items) (1 - blend) * softmax(model_scores) + blend * counts / counts.sum() per row;
    a row without counts keeps the softmax alone."""
    z = model_scores - model_scores.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts, dtype=np.float64), where=totals > 0)
    mixed = (1.0 - blend) * probs + blend * share
    return np.where(totals > 0, mixed, probs)


def co_occurrence(
    events: Iterable[Event], vocab: ItemVocab, gap_ms: int = SESSION_GAP_MS
) -> dict[int, Counter[int]]:
    """Per catalog item, the number of sessions it shared with each other catalog item."""
    out: dict[int, Counter[int]] = defaultdict(Counter)
    for evs in group_by_user(sorted(events, key=lambda e: e.ts)).values():
        for session in sessions_of(evs, gap_ms):
            items = {i for i in (vocab.index(e.item_id) for e in session) if i is not None}
            for a in items:
                for b in items:
                    if a != b:
                        out[a][b] += 1
    return out


@dataclass(frozen=True)
class Prediction:
    """One scenario prediction: sequence, position (the scorer sees context + events[:position]),
    the target items, the items it must leave out, and (search) the query."""

    seq: int
    position: int
    targets: tuple[int, ...]
    excluded: tuple[int, ...] = ()
    query: str = ""


def search_predictions(seqs: Sequence[EvalSequence], vocab: ItemVocab) -> list[Prediction]:
    """Test positions whose previous event is a search and whose event has a catalog item."""
    out = []
    for s, seq in enumerate(seqs):
        for t in range(1, len(seq.events)):
            prev, ev = seq.events[t - 1], seq.events[t]
            idx = vocab.index(ev.item_id)
            if prev.type is EventType.SEARCH and idx is not None:
                out.append(Prediction(s, t, (idx,), query=normalise_query(prev.query)))
    return out


def cart_predictions(
    seqs: Sequence[EvalSequence], vocab: ItemVocab, gap_ms: int | None = SESSION_GAP_MS
) -> list[Prediction]:
    """Each test add_to_cart followed by items not carted so far being carted or bought, in its
    session (or, with `gap_ms` None, in the rest of the test sequence): those items are what
    completes the cart."""
    out = []
    for s, seq in enumerate(seqs):
        events = (*seq.context, *seq.events)
        base = len(seq.context)
        for t, ev in enumerate(seq.events):
            if (
                ev.type is not EventType.ADD_TO_CART
                or vocab.index(ev.item_id) is None
                or t + 1 >= len(seq.events)
            ):
                continue
            carted = {
                vocab.index(e.item_id) for e in events[: base + t + 1] if e.type is EventType.ADD_TO_CART
            }
            carted.discard(None)
            bought: list[int] = []
            for j in range(base + t + 1, len(events)):
                if gap_ms is not None and is_new_session(events[j - 1], events[j], gap_ms):
                    break
                idx = vocab.index(events[j].item_id)
                if events[j].type in BASKET and idx is not None and idx not in carted:
                    bought.append(idx)
            if bought:
                kept = tuple(sorted(i for i in carted if i is not None))
                out.append(Prediction(s, t + 1, tuple(dict.fromkeys(bought)), kept))
    return out


def related_predictions(
    seqs: Sequence[EvalSequence], vocab: ItemVocab, gap_ms: int = SESSION_GAP_MS
) -> list[tuple[int, int, int]]:
    """(sequence, item i, next item j) for consecutive distinct catalog items of a test session."""
    out = []
    for s, seq in enumerate(seqs):
        evs = [e for e in seq.events if e.item_id is not None]
        for a, b in pairwise(evs):
            i, j = vocab.index(a.item_id), vocab.index(b.item_id)
            if i is not None and j is not None and i != j and not is_new_session(a, b, gap_ms):
                out.append((s, i, j))
    return out


def session_purchase_labels(
    seq: EvalSequence, positions: Sequence[int], gap_ms: int = SESSION_GAP_MS
) -> np.ndarray:
    """(len(positions),) bool: after context + events[:p], does the current session (that of
    events[p - 1]) still have a purchase, at events[p:] before the session ends?"""
    events = (*seq.context, *seq.events)
    base = len(seq.context)
    # later[j]: a purchase at or after j within j's session (scanning backwards).
    later = np.zeros(len(events) + 1, bool)
    for j in range(len(events) - 1, -1, -1):
        same_next = j + 1 < len(events) and not is_new_session(events[j], events[j + 1], gap_ms)
        later[j] = events[j].type is EventType.PURCHASE or (same_next and later[j + 1])
    out = []
    for p in positions:
        j = base + p
        out.append(j < len(events) and not is_new_session(events[j - 1], events[j], gap_ms) and later[j])
    return np.asarray(out, bool)


def set_ranks(scores: np.ndarray, targets: Sequence[int], excluded: Sequence[int] = ()) -> int:
    """Conservative rank (1 = best) of the best-ranked target in a score row, excluded items removed."""
    row = np.asarray(scores, np.float64).copy()
    if excluded:
        row[list(excluded)] = -np.inf
    best = max(row[list(targets)])
    return 1 + int((row >= best).sum()) - int(sum(row[t] >= best for t in targets))


def hit_and_rr(ranks: np.ndarray, k: int) -> np.ndarray:
    """(n, 2) per prediction: hit@k (0/1) and reciprocal rank@k (0 past k)."""
    r = np.asarray(ranks, np.float64)
    hit = (r <= k).astype(np.float64)
    return np.stack([hit, np.where(r <= k, 1.0 / r, 0.0)], 1)


def calibration_curve(
    labels: np.ndarray, probs: np.ndarray, bins: int = 10
) -> list[dict[str, str | float | int | None]]:
    """Equal-width bins of predicted probability: n, mean predicted, observed positive rate."""
    y = np.asarray(labels, np.float64)
    p = np.asarray(probs, np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out: list[dict[str, str | float | int | None]] = []
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        out.append(
            {
                "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                "n": n,
                "predicted": float(p[sel].mean()) if n else None,
                "observed": float(y[sel].mean()) if n else None,
            }
        )
    return out

"""Fresh items: how feeds include items newer than the model's catalog (the rule in the README).

A model only ranks the items of its training vocabulary, so an item first seen after training
would never be recommended until the next `retrain`. The worker therefore keeps a bounded
co-visitation table from items the model does not know ("fresh" items) to the known items viewed
just before them by the same user in the same session (`schema.sessions`: the session rule),
decayed by event time with a half-life. A feed reserves up to `fresh_slots` of its k places:

1. fresh items co-visited with the user's recent known items (the model's history window),
   highest decayed counts first;
2. then the most trending fresh items (`TrendingWindow` counts every item id it sees).

Fresh entries go last in the feed and carry `"fresh": true`; the feed policy still applies to
them (see `FreshItems.pick`). Once a retrained model knows an item it is ranked by the model and
is no longer fresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from behavior_stream.schema.events import Event, EventType
from behavior_stream.schema.sessions import is_new_session, session_boundary
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.outputs import ExcludePolicy
from behavior_stream.stream.core.state import UserState
from behavior_stream.stream.core.trending import TrendingWindow

log = logging.getLogger(__name__)

# Decayed counts below this (about 4.3 half-lives after a single co-visit) are pruned.
MIN_WEIGHT = 0.05
TRENDING_DEPTH = 512  # trending items looked at for the fallback (once per batch)
EXCLUSION_ROOM = 8  # extra trending candidates, so a user's excluded ones can be skipped


def last_known_in_session(vocab: ItemVocab, history: np.ndarray, session_events: int) -> str | None:
    """The latest catalog item among the last `session_events` slots of a history window.

    The window holds one slot per event (-1 for searches and unknown items) and the state counts
    the events of the current session, so its tail is exactly the session's part of the window.
    """
    if session_events <= 0:
        return None
    for idx in history[-min(session_events, len(history)) :][::-1].tolist():
        if 0 <= idx < vocab.n_items:
            return vocab.items[idx]
    return None


def previous_visit(st: UserState, vocab: ItemVocab, same_model: bool) -> tuple[int, str, str | None] | None:
    """What `FreshItems.observe` needs of a stored user state before a batch (None: no events).

    The history window holds catalog indices of the model that wrote it (`same_model`); a state
    of another version is adopted later, so its anchor is left out rather than mistranslated.
    """
    if st.last_ts < 0:
        return None
    anchor = last_known_in_session(vocab, st.history, sum(st.session_counts)) if same_model else None
    return st.last_ts, st.session_id, anchor


def excluded_fresh(exclude: Iterable[ExcludePolicy], events: Sequence[Event]) -> set[str]:
    """Item ids of `events` the feed policy leaves out (the state keeps only catalog items, so
    for fresh items the policy sees the batch's events, see the README)."""
    policy = set(exclude)
    out: set[str] = set()
    for ev in events:
        if ev.item_id is None:
            continue
        if (
            "recent" in policy
            or ("carted" in policy and ev.type is EventType.ADD_TO_CART)
            or ("purchased" in policy and ev.type is EventType.PURCHASE)
        ):
            out.add(ev.item_id)
    return out


def recent_known(vocab: ItemVocab, history: np.ndarray) -> list[str]:
    """The catalog items of a user's history window (the anchors a feed looks up)."""
    return [vocab.items[i] for i in history.tolist() if 0 <= i < vocab.n_items]


def reserve(
    items: list[int], scores: list[float], fresh: Sequence[tuple[str, float]], k: int
) -> tuple[list[int], list[float]]:
    """The model's feed cut so that it and the fresh items fit in k places (fresh ones go last)."""
    keep = min(len(items), max(0, k - len(fresh)))
    return items[:keep], scores[:keep]


@dataclass(slots=True)
class _Pairs:
    """Decayed co-visit counts of one fresh item, by the known item seen before it."""

    weights: dict[str, float] = field(default_factory=dict)
    ts: int = 0  # event time the weights are decayed to


@dataclass
class FreshItems:
    """The co-visitation table: fresh item -> known item -> count decayed by event time.

    Bounded: at most `max_items` fresh items (those touched longest ago are dropped first) and
    `max_anchors` known items per fresh item (the lowest counts are dropped). An inverted index
    (known item -> fresh items) keeps a feed's lookup proportional to the user's history, not
    to the table. Kept per worker in memory over its partitions, like trending: a restart only
    forgets recent co-visits.
    """

    half_life_ms: int = 3_600_000
    max_items: int = 10_000
    max_anchors: int = 32
    # Ranking the trending window costs its size (~50 ms at 100k items), so its unknown items
    # are recomputed at most this often (wall clock), not per batch.
    trending_refresh_s: float = 1.0
    _pairs: dict[str, _Pairs] = field(default_factory=dict)
    _by_anchor: dict[str, set[str]] = field(default_factory=dict)
    _clock: int = 0  # the largest event time observed
    _warned_full: bool = False
    _trending: tuple[int, int, float, list[tuple[str, float]]] | None = None  # vocab id, n, when, items

    def _unlink(self, fresh_item: str, anchor: str) -> None:
        linked = self._by_anchor.get(anchor)
        if linked is not None:
            linked.discard(fresh_item)
            if not linked:
                del self._by_anchor[anchor]

    def _decay(self, item: str, pairs: _Pairs, ts: int) -> None:
        if ts <= pairs.ts:
            return
        factor = 0.5 ** ((ts - pairs.ts) / self.half_life_ms)
        kept: dict[str, float] = {}
        for anchor, w in pairs.weights.items():
            if w * factor >= MIN_WEIGHT:
                kept[anchor] = w * factor
            else:
                self._unlink(item, anchor)
        pairs.weights, pairs.ts = kept, ts

    def _drop(self, item: str) -> None:
        for anchor in self._pairs.pop(item).weights:
            self._unlink(item, anchor)

    def add(self, fresh_item: str, anchor: str, ts: int) -> None:
        """Count one co-visit: `fresh_item` viewed after `anchor` (a known item) at event time `ts`."""
        self._clock = max(self._clock, ts)
        pairs = self._pairs.pop(fresh_item, None) or _Pairs(ts=ts)
        self._pairs[fresh_item] = pairs  # re-inserted last: dict order is least recently touched first
        self._decay(fresh_item, pairs, ts)
        # A co-visit older than the item's clock (late, within grace) counts with its own decay.
        weight = 0.5 ** (max(0, pairs.ts - ts) / self.half_life_ms)
        pairs.weights[anchor] = pairs.weights.get(anchor, 0.0) + weight
        self._by_anchor.setdefault(anchor, set()).add(fresh_item)
        if len(pairs.weights) > self.max_anchors:
            weakest = min(pairs.weights, key=pairs.weights.__getitem__)
            del pairs.weights[weakest]
            self._unlink(fresh_item, weakest)
        while len(self._pairs) > self.max_items:
            if not self._warned_full:  # once: the bound is expected to be reached on big catalogs
                log.warning(
                    "fresh-item table full (%d items): dropping the least recently seen", self.max_items
                )
                self._warned_full = True
            self._drop(next(iter(self._pairs)))

    def observe(
        self,
        vocab: ItemVocab,
        events: Sequence[Event],
        prev: tuple[int, str, str | None] | None,
        gap_ms: int,
    ) -> None:
        """Count the co-visits of one user's events (in order) under a model's vocabulary.

        `prev` describes the user's last event before them: (event time, session id, the latest
        known item of that session or None); None for a user without one.
        """
        anchor = prev[2] if prev is not None else None
        before: Event | None = None
        for ev in events:
            if before is not None:
                new = is_new_session(before, ev, gap_ms)
            else:
                new = prev is None or session_boundary(prev[0], prev[1], ev.ts, ev.session_id, gap_ms)
            if new:
                anchor = None
            before = ev
            if ev.item_id is None:
                continue  # a search keeps the session's anchor
            if vocab.index(ev.item_id) is not None:
                anchor = ev.item_id
            elif anchor is not None:
                self.add(ev.item_id, anchor, ev.ts)

    def covisited(self, vocab: ItemVocab, recent: Iterable[str]) -> list[tuple[str, float]]:
        """Fresh items (not in `vocab`) co-visited with any of `recent`, by summed decayed count."""
        anchors = set(recent)
        candidates = set().union(*(self._by_anchor.get(a, ()) for a in anchors)) if anchors else set()
        found: list[tuple[str, float]] = []
        for item in candidates:
            if vocab.index(item) is not None:
                continue  # a retrained model knows it now: the model ranks it
            pairs = self._pairs[item]
            factor = 0.5 ** (max(0, self._clock - pairs.ts) / self.half_life_ms)
            score = sum(w for a, w in pairs.weights.items() if a in anchors) * factor
            if score >= MIN_WEIGHT:
                found.append((item, score))
        found.sort(key=lambda kv: (-kv[1], kv[0]))
        return found

    def pick(
        self,
        vocab: ItemVocab,
        recent: Iterable[str],
        excluded: set[str],
        n: int,
        trending: Sequence[tuple[str, float]],
    ) -> list[tuple[str, float]]:
        """Up to `n` fresh items for a feed: co-visited first, then `trending` (see `trending_fresh`).

        None is in `excluded`. Scores are the decayed co-visit count, or the trending window count
        for the fallback.
        """
        if n <= 0:
            return []
        out: list[tuple[str, float]] = []
        for item, score in self.covisited(vocab, recent):
            if item not in excluded:
                out.append((item, score))
                if len(out) == n:
                    return out
        taken = {item for item, _ in out}
        for item, count in trending:
            if item not in excluded and item not in taken:
                out.append((item, count))
                if len(out) == n:
                    break
        return out

    def place(
        self,
        vocab: ItemVocab,
        history: np.ndarray,
        excluded: set[str],
        slots: int,
        window: TrendingWindow,
        feed: tuple[list[int], list[float]],
        k: int,
    ) -> tuple[list[int], list[float], list[tuple[str, float]]]:
        """A model feed with up to `slots` fresh items for a user with this history window: the
        feed cut to make room (`reserve`), and the fresh items that go after it. The one place the
        stream and the API apply the rule; `slots` 0 leaves the feed as it is."""
        items, scores = feed
        if slots <= 0:
            return items, scores, []
        trend = self.trending(vocab, window, slots)
        fresh = self.pick(vocab, recent_known(vocab, history), excluded, slots, trend)
        items, scores = reserve(items, scores, fresh, k)
        return items, scores, fresh

    def trending(self, vocab: ItemVocab, window: TrendingWindow, n: int) -> list[tuple[str, float]]:
        """`trending_fresh` of the window, cached for `trending_refresh_s` per vocabulary and n."""
        now = time.monotonic()
        cached = self._trending
        if cached is not None and cached[:2] == (id(vocab), n) and now - cached[2] < self.trending_refresh_s:
            return cached[3]
        items = trending_fresh(vocab, window, n)
        self._trending = (id(vocab), n, now, items)
        return items

    def __len__(self) -> int:
        return len(self._pairs)


def trending_fresh(vocab: ItemVocab, trending: TrendingWindow, n: int) -> list[tuple[str, float]]:
    """The most trending items `vocab` does not know, up to `n` plus room for a user's exclusions.

    Computed once per batch and model, not per user: ranking the window costs its size. Only the
    window's top `TRENDING_DEPTH` are looked at, so where the trending items are all known there is
    no trending fallback.
    """
    if n <= 0:
        return []
    out: list[tuple[str, float]] = []
    for item, count in trending.top(TRENDING_DEPTH):
        if vocab.index(item) is None:
            out.append((item, float(count)))
            if len(out) == n + EXCLUSION_ROOM:
                break
    return out

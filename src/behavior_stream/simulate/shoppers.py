"""Simulated shoppers: drifting category tastes, and sessions that search, browse, cart and buy."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from behavior_stream.schema.events import TYPE_INDEX, EventType
from behavior_stream.simulate.catalog import (
    GENERIC_WORDS,
    HIGH_PRICE_WORDS,
    LOW_PRICE_WORDS,
    STYLES,
    Catalog,
    listing_neighbors,
)

CLICK = TYPE_INDEX[EventType.CLICK]
SEARCH = TYPE_INDEX[EventType.SEARCH]
CART = TYPE_INDEX[EventType.ADD_TO_CART]
FAVORITE = TYPE_INDEX[EventType.FAVORITE]
PURCHASE = TYPE_INDEX[EventType.PURCHASE]


@dataclass(frozen=True)
class Behavior:
    """Knobs of the shopper simulation; probabilities are per event unless stated."""

    session_log_mean: float = 2.0  # browse steps per session: 1 + lognormal(mean, sigma)
    session_log_sigma: float = 0.8
    search_first: float = 0.7  # per session: it opens with a search
    cart: float = 0.07  # after a click: add that item to the cart
    favorite: float = 0.03  # after a click: favorite it
    repeat: float = 0.10  # re-view an earlier item of the session
    distract: float = 0.06  # click a site-wide popular item, then resume browsing
    switch: float = 0.03  # move to another category
    refine: float = 0.05  # search the current category again
    search_on_switch: float = 0.7  # a move to another category goes through a search
    query_color: float = 0.25  # a query names a color of the session's style
    query_extra_word: float = 0.4  # a query adds a price or generic word
    reverse: float = 0.1  # turn around while browsing the price-sorted list
    checkout: float = 0.35  # per session with a new cart item: buy the cart
    return_cart: float = 0.25  # per session with a non-empty cart: open on a cart item
    return_view: float = 0.15  # per session: open on an item viewed in a recent session
    explore: float = 0.12  # per intent: a category outside the shopper's favorites
    drift: float = 0.15  # per session: one favorite category is replaced
    window: int = 24  # browsing moves up to this many places along the price order
    window_decay: float = 0.9  # far moves are rarer than near ones
    walk_popularity_power: float = 0.5  # popular items attract the browse, a little
    style_boost: float = 4.0  # items of the session's style are this much likelier in a move
    style_loyalty: float = 0.7  # per session: the shopper's own style, else any


class Uniforms:
    """Uniform draws handed out from blocks: a numpy call per draw would dominate the run time."""

    def __init__(self, rng: np.random.Generator, block: int = 16_384) -> None:
        self._rng = rng
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self._i == len(self._buf):
            self._buf = self._rng.random(self._block).tolist()
            self._i = 0
        self._i += 1
        return self._buf[self._i - 1]


def _cumulative(weights: np.ndarray) -> list[float]:
    """Normalized cumulative weights as a list, for `bisect_right(cum, uniform)` sampling."""
    cum = np.cumsum(weights)
    return (cum / cum[-1]).tolist()


@dataclass(slots=True)
class Shopper:
    """One user's lasting state: favorite categories (drifting), price taste, cart, recent views."""

    favorites: list[int]
    weights: list[float]
    price_taste: float  # 0 cheapest .. 1 dearest place in a category's price order
    style: int  # the style this shopper mostly looks for
    cart: list[int]
    recent: list[int]


Step = tuple[int, int, str | None]  # (type index, item index or -1, query)


class SessionSimulator:
    """Draws shoppers and their sessions over one catalog."""

    def __init__(self, rng: np.random.Generator, catalog: Catalog, behavior: Behavior) -> None:
        self.rng, self.u, self.catalog, self.b = rng, Uniforms(rng), catalog, behavior
        self.cand, weight = listing_neighbors(
            catalog, behavior.window, behavior.window_decay, behavior.walk_popularity_power
        )
        # Cumulative move probabilities per item, direction and session style, computed up front: a
        # per-move numpy computation would dominate the run time.
        styles = np.arange(len(STYLES))[None, None, :, None]
        boosted = weight[:, :, None, :] * np.where(
            catalog.style[self.cand][:, :, None, :] == styles, behavior.style_boost, 1.0
        )  # (n_items, 2, n_styles, window)
        cum = np.cumsum(boosted, axis=3)
        self.move_cum = (cum / np.maximum(cum[..., -1:], 1e-300)).astype(np.float32)
        self.reach: list[list[int]] = (weight > 0).sum(axis=2).tolist()  # (n_items, 2) moves in reach
        self.category_of: list[int] = catalog.category_of.tolist()
        self.category_p = catalog.category_weights()
        self.category_cum = _cumulative(self.category_p)
        self.global_cum = _cumulative(catalog.popularity)
        self.members: list[list[int]] = [m.tolist() for m in catalog.by_price]
        self.member_pop = [catalog.popularity[m] for m in catalog.by_price]
        self.member_cum = [_cumulative(p) for p in self.member_pop]
        self.member_style = [catalog.style[m] for m in catalog.by_price]

    def new_shopper(self) -> Shopper:
        """A shopper with 2-5 favorite categories (popular ones likelier), a price taste and a style."""
        rng, n_categories = self.rng, len(self.catalog.categories)
        k = min(n_categories, int(rng.integers(2, 6)))
        favorites = rng.choice(n_categories, size=k, replace=False, p=self.category_p).tolist()
        weights = rng.dirichlet(np.ones(k)).tolist()
        style = int(rng.integers(0, len(STYLES)))
        return Shopper(favorites, weights, float(rng.beta(2.0, 2.0)), style, [], [])

    def _drift(self, s: Shopper) -> None:
        if self.u() < self.b.drift:
            new = self._any_category()
            if new not in s.favorites:
                s.favorites[int(self.u() * len(s.favorites))] = new
        weights = np.asarray(s.weights) * np.exp(0.3 * self.rng.standard_normal(len(s.weights)))
        s.weights = (weights / weights.sum()).tolist()

    def _any_category(self) -> int:
        return min(bisect_right(self.category_cum, self.u()), len(self.category_cum) - 1)

    def _intent(self, s: Shopper) -> int:
        if self.u() < self.b.explore:
            return self._any_category()
        r, acc = self.u(), 0.0
        for category, weight in zip(s.favorites, s.weights, strict=True):
            acc += weight
            if r < acc:
                return category
        return s.favorites[-1]

    def _query(self, category: int, s: Shopper, style: int) -> str:
        """1-3 words of the category, maybe a color of the session's style and a price or generic word."""
        pool = list(self.catalog.categories[category].words)
        r = self.u()
        k = min(len(pool), 1 if r < 0.45 else 2 if r < 0.85 else 3)
        words = [pool.pop(int(self.u() * len(pool))) for _ in range(k)]
        if self.u() < self.b.query_color:
            colors = STYLES[style]
            words.insert(0, colors[int(self.u() * len(colors))])
        if self.u() < self.b.query_extra_word:
            taste = s.price_taste
            extra = LOW_PRICE_WORDS if taste < 0.3 else HIGH_PRICE_WORDS if taste > 0.7 else GENERIC_WORDS
            words.insert(0 if self.u() < 0.5 else len(words), extra[int(self.u() * len(extra))])
        return " ".join(words)

    def _open(self, category: int, s: Shopper, style: int, search: bool, out: list[Step]) -> int:
        """Land on a category: via a search (results near the shopper's price taste, popular first)
        or via its bestseller list. Returns the clicked item."""
        members = self.members[category]
        if search:
            out.append((SEARCH, -1, self._query(category, s, style)))
            m = len(members)
            center = round(min(max(s.price_taste + 0.12 * self.rng.standard_normal(), 0.0), 1.0) * (m - 1))
            lo, hi = max(0, center - 10), min(m, center + 11)
            boost = np.where(self.member_style[category][lo:hi] == style, self.b.style_boost, 1.0)
            cum = np.cumsum(self.member_pop[category][lo:hi] * boost)
            j = min(lo + int(np.searchsorted(cum, self.u() * cum[-1], side="right")), hi - 1)
        else:
            j = min(bisect_right(self.member_cum[category], self.u()), len(members) - 1)
        out.append((CLICK, members[j], None))
        return members[j]

    def _walk(self, anchor: int, direction: int, style: int) -> tuple[int, int]:
        """One move along the price-sorted listing, favoring the session's style. The direction
        persists and the style shows only over several items, so order carries signal."""
        if self.u() < self.b.reverse:
            direction = -direction
        di = 0 if direction > 0 else 1
        if self.reach[anchor][di] == 0:  # at the end of the listing: turn around
            direction, di = -direction, 1 - di
        reach = self.reach[anchor][di]
        if reach == 0:  # a one-item category
            return anchor, direction
        j = min(bisect_right(self.move_cum[anchor, di, style].tolist(), self.u()), reach - 1)
        return int(self.cand[anchor, di, j]), direction

    def session(self, s: Shopper) -> list[Step]:
        """The next session of a shopper, whose tastes drift a little first; updates its cart and
        recent views."""
        b, u = self.b, self.u
        self._drift(s)
        out: list[Step] = []
        length = 1 + int(self.rng.lognormal(b.session_log_mean, b.session_log_sigma))
        style = s.style if u() < b.style_loyalty else int(u() * len(STYLES))
        r = u()
        if s.cart and r < b.return_cart:  # back for something left in the cart
            anchor = s.cart[int(u() * len(s.cart))]
            out.append((CLICK, anchor, None))
        elif s.recent and r < b.return_cart + b.return_view:  # back to something seen lately
            anchor = s.recent[-1 - int(u() * len(s.recent))]
            out.append((CLICK, anchor, None))
        else:
            anchor = self._open(self._intent(s), s, style, u() < b.search_first, out)
        category, viewed, carted = self.category_of[anchor], [anchor], False
        direction = 1 if u() < 0.5 else -1
        p_distract = b.repeat + b.distract
        p_switch = p_distract + b.switch
        p_refine = p_switch + b.refine
        while len(out) < length:
            kind, last, _ = out[-1]
            if kind == CLICK:
                r = u()
                if r < b.cart:
                    out.append((CART, last, None))
                    if last not in s.cart:
                        s.cart.append(last)
                    carted = True
                    continue
                if r < b.cart + b.favorite:
                    out.append((FAVORITE, last, None))
                    continue
            r = u()
            if r < b.repeat and len(viewed) >= 2:  # back to an earlier item, recent ones likelier
                item = viewed[-2 - min(int(-2.0 * math.log(1.0 - u())), len(viewed) - 2)]
                if self.category_of[item] == category:
                    anchor = item
            elif r < p_distract:  # a site-wide bestseller catches the eye; browsing resumes after
                item = min(bisect_right(self.global_cum, u()), len(self.global_cum) - 1)
            elif r < p_switch:
                category = self._intent(s)
                anchor = self._open(category, s, style, u() < b.search_on_switch, out)
                viewed.append(anchor)
                continue
            elif r < p_refine:
                anchor = self._open(category, s, style, True, out)
                viewed.append(anchor)
                continue
            else:
                anchor, direction = self._walk(anchor, direction, style)
                item = anchor
            out.append((CLICK, item, None))
            viewed.append(item)
        if s.cart and u() < (b.checkout if carted else 0.3 * b.checkout):
            bought = [i for i in s.cart if u() < 0.85] or [s.cart[-1]]
            out.extend((PURCHASE, i, None) for i in bought)
            s.cart = [i for i in s.cart if i not in bought]
        del s.cart[:-8]  # long-forgotten cart items drop out
        s.recent = (s.recent + viewed[-6:])[-30:]
        return out

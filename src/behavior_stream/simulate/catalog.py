"""The simulated product catalog: categories with search words, priced and named items, popularity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Each base category: (display name, its search words). Words are unique across base categories, so
# a query names exactly one base category; names may reuse words ("sleeping bag" is not a backpack).
BASE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("running shoe", ("running", "shoe", "sneaker", "trainer")),
    ("rain jacket", ("rain", "jacket", "waterproof", "coat")),
    ("desk lamp", ("desk", "lamp", "led", "light")),
    ("coffee maker", ("coffee", "maker", "espresso", "brew")),
    ("yoga mat", ("yoga", "mat", "pilates", "stretch")),
    ("backpack", ("backpack", "rucksack", "daypack", "bag")),
    ("headphones", ("headphones", "wireless", "earbuds", "audio")),
    ("phone case", ("phone", "case", "cover", "bumper")),
    ("kitchen knife", ("knife", "chef", "blade", "santoku")),
    ("water bottle", ("water", "bottle", "flask", "insulated")),
    ("wrist watch", ("watch", "wrist", "chronograph", "strap")),
    ("sunglasses", ("sunglasses", "polarized", "shades", "uv")),
    ("bed sheet", ("bed", "sheet", "linen", "duvet")),
    ("throw pillow", ("pillow", "cushion", "throw", "sofa")),
    ("board game", ("board", "game", "strategy", "dice")),
    ("jigsaw puzzle", ("puzzle", "jigsaw", "pieces", "picture")),
    ("dog toy", ("dog", "toy", "chew", "puppy")),
    ("cat tree", ("cat", "kitten", "scratcher", "tree")),
    ("garden hose", ("garden", "hose", "nozzle", "sprinkler")),
    ("power drill", ("drill", "cordless", "power", "driver")),
    ("camping tent", ("tent", "camping", "shelter", "dome")),
    ("sleeping bag", ("sleeping", "mummy", "down", "quilt")),
    ("bicycle helmet", ("helmet", "bicycle", "cycling", "mips")),
    ("face cream", ("cream", "moisturizer", "skin", "lotion")),
    ("shampoo", ("shampoo", "conditioner", "hair", "scalp")),
    ("toothbrush", ("toothbrush", "electric", "dental", "bristle")),
    ("laptop stand", ("laptop", "stand", "riser", "ergonomic")),
    ("mechanical keyboard", ("keyboard", "mechanical", "keycaps", "switches")),
    ("computer mouse", ("mouse", "gaming", "dpi", "trackball")),
    ("usb charger", ("charger", "usb", "adapter", "fast")),
    ("baby stroller", ("stroller", "baby", "pram", "pushchair")),
    ("winter scarf", ("scarf", "wool", "winter", "knit")),
    ("leather wallet", ("wallet", "leather", "cardholder", "billfold")),
    ("cooking pot", ("pot", "saucepan", "stockpot", "cookware")),
    ("blender", ("blender", "smoothie", "juicer", "mixer")),
    ("paperback novel", ("novel", "book", "paperback", "fiction")),
    ("guitar strings", ("guitar", "strings", "acoustic", "pick")),
    ("loose tea", ("tea", "matcha", "oolong", "loose")),
    ("wall clock", ("clock", "wall", "analog", "pendulum")),
    ("plant pot", ("planter", "ceramic", "succulent", "terracotta")),
    ("swim goggles", ("goggles", "swim", "antifog", "pool")),
    ("vitamins", ("vitamin", "supplement", "multivitamin", "capsules")),
)
# Product lines multiply the base categories when a catalog asks for more ("kids running shoe").
LINES: tuple[str, ...] = ("kids", "pro", "travel", "eco", "vintage", "mini")
MAX_CATEGORIES = len(BASE_CATEGORIES) * (1 + len(LINES))
# Colors come in styles; a shopper tends to stick to one style through a session.
STYLE_NAMES: tuple[str, ...] = ("warm", "cool", "neutral")
STYLES: tuple[tuple[str, ...], ...] = (
    ("red", "orange", "pink", "purple"),
    ("blue", "navy", "teal", "green"),
    ("black", "white", "grey", "beige"),
)
# Words a query may add to its category words: neutral ones, and ones that reveal a price taste.
GENERIC_WORDS: tuple[str, ...] = ("best", "new", "sale", "deal", "gift", "top")
LOW_PRICE_WORDS: tuple[str, ...] = ("cheap", "budget")
HIGH_PRICE_WORDS: tuple[str, ...] = ("premium", "luxury")
# Zipf-Mandelbrot popularity, weight (rank + OFFSET) ** -EXPONENT: the offset flattens the very head
# so a handful of items does not dominate, while the tail still falls off as a power law.
POPULARITY_EXPONENT = 2.0
POPULARITY_OFFSET = 150.0


@dataclass(frozen=True)
class Category:
    """A product category: its display name and the words shoppers use to search for it."""

    name: str
    words: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items `0..n_items-1` with category, name, price and base popularity, plus price-sorted categories."""

    categories: tuple[Category, ...]
    item_ids: list[str]
    names: list[str]
    category_of: np.ndarray  # (n_items,) int64 category index
    price: np.ndarray  # (n_items,) float64
    style: np.ndarray  # (n_items,) int64 index into STYLES
    popularity: np.ndarray  # (n_items,) float64, sums to 1
    by_price: tuple[np.ndarray, ...]  # per category: its item indices, cheapest first
    rank_in_category: np.ndarray  # (n_items,) int64 position of the item in its category's by_price

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    def category_weights(self) -> np.ndarray:
        """(n_categories,) share of base popularity per category; how often shoppers want it."""
        return np.bincount(self.category_of, weights=self.popularity, minlength=len(self.categories))

    def records(self) -> list[dict[str, object]]:
        """The catalog as JSON-ready rows (the sidecar file the demo reads names from)."""
        return [
            {
                "item_id": self.item_ids[i],
                "category": self.categories[int(self.category_of[i])].name,
                "name": self.names[i],
                "price": round(float(self.price[i]), 2),
                "style": STYLE_NAMES[int(self.style[i])],
                "popularity": float(self.popularity[i]),
            }
            for i in range(self.n_items)
        ]


def default_categories(n_items: int) -> int:
    """About 120 items per category, within [1, MAX_CATEGORIES]."""
    return max(1, min(MAX_CATEGORIES, n_items // 120))


def make_categories(n: int) -> tuple[Category, ...]:
    """The first `n` categories: every base category, then the base categories of each product line."""
    if not 1 <= n <= MAX_CATEGORIES:
        raise ValueError(f"categories must be in [1, {MAX_CATEGORIES}], got {n}")
    out: list[Category] = []
    for line in ("", *LINES):
        for name, words in BASE_CATEGORIES:
            if len(out) == n:
                return tuple(out)
            out.append(Category(f"{line} {name}", (*words, line)) if line else Category(name, words))
    return tuple(out)


def build_catalog(rng: np.random.Generator, n_items: int, n_categories: int) -> Catalog:
    """A random catalog: uneven category sizes, power-law popularity, prices spread within category."""
    categories = make_categories(n_categories)
    if n_items < n_categories:
        raise ValueError(f"need at least one item per category: items={n_items} < categories={n_categories}")
    share = rng.lognormal(0.0, 0.6, n_categories)
    sizes = 1 + rng.multinomial(n_items - n_categories, share / share.sum())
    category_of = rng.permutation(np.repeat(np.arange(n_categories), sizes))

    ranks = rng.permutation(n_items)  # popularity rank of each item, independent of category and price
    popularity = (ranks + 1.0 + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    popularity /= popularity.sum()

    by_price = tuple(rng.permutation(np.flatnonzero(category_of == c)) for c in range(n_categories))
    rank_in_category = np.empty(n_items, dtype=np.int64)
    price = np.empty(n_items)
    base_price = rng.lognormal(np.log(40.0), 0.8, n_categories)
    for c, members in enumerate(by_price):
        rank_in_category[members] = np.arange(len(members))
        spread = np.linspace(-1.0, 1.0, len(members)) if len(members) > 1 else np.zeros(1)
        price[members] = base_price[c] * np.exp(0.9 * spread)

    width = len(str(n_items - 1))
    item_ids = [f"i{i:0{width}d}" for i in range(n_items)]
    style = rng.integers(0, len(STYLES), n_items)
    shade = rng.integers(0, len(STYLES[0]), n_items)
    names = [
        f"{STYLES[s][k]} {categories[c].name} #{i}"
        for i, (s, k, c) in enumerate(zip(style.tolist(), shade.tolist(), category_of.tolist(), strict=True))
    ]
    return Catalog(
        categories, item_ids, names, category_of, price, style, popularity, by_price, rank_in_category
    )


def listing_neighbors(
    catalog: Catalog, window: int, decay: float, popularity_power: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per item and direction (0 up, 1 down its category's price-sorted listing): the `window` next
    items (n_items, 2, window) and their attraction, popularity ** power fading by `decay` per
    place, 0 past the end of the listing (n_items, 2, window)."""
    n = catalog.n_items
    cand = np.zeros((n, 2, window), dtype=np.int64)
    weight = np.zeros((n, 2, window))
    steps = np.arange(1, window + 1)
    fade = decay ** np.arange(window)
    for members in catalog.by_price:
        m = len(members)
        for di, sign in enumerate((1, -1)):
            pos = np.arange(m)[:, None] + sign * steps[None, :]  # (m, window)
            inside = (pos >= 0) & (pos < m)
            idx = members[np.clip(pos, 0, m - 1)]
            cand[members, di] = idx
            weight[members, di] = np.where(inside, catalog.popularity[idx] ** popularity_power * fade, 0.0)
    return cand, weight

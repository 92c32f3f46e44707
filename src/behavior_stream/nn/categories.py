"""Item categories as a model input: the category vocabulary and the category row of each event.

Categories come from each format's side data (Taobao's column, Diginetica's product
categories, the generator's catalog); an item the item vocabulary does not know still brings
its category, and a category never seen in training shares the unknown row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from behavior_stream.schema.events import Event

NO_CATEGORY = 0  # events without an item (search), and padding
UNKNOWN_CATEGORY = 1  # an item whose category is unknown, or was never seen in training
FIRST_CATEGORY = 2


@dataclass(frozen=True)
class CategoryVocab:
    """Category names in index order (from `FIRST_CATEGORY` on) and the catalog map item -> category.

    `items` may know more items than the item vocabulary (side data covers new items too); an
    item whose category is not among `names` (never seen in training) is `UNKNOWN_CATEGORY`.
    """

    names: tuple[str, ...]
    items: dict[str, str] = field(compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: FIRST_CATEGORY + i for i, c in enumerate(self.names)})

    @classmethod
    def build(cls, item_categories: dict[str, str], training_items: Iterable[str | None]) -> CategoryVocab:
        """Categories of the training items, most frequent first (ties by name): their rows get trained."""
        known = (item_categories.get(i) for i in training_items if i is not None)
        counts = Counter(c for c in known if c is not None)
        names = tuple(sorted(counts, key=lambda c: (-counts[c], c)))
        return cls(names, dict(item_categories))

    @property
    def n_rows(self) -> int:
        """Rows of the category embedding: no-category, unknown, then every name."""
        return FIRST_CATEGORY + len(self.names)

    def index(self, item_id: str | None) -> int:
        """Category row of an item (`NO_CATEGORY` without an item, `UNKNOWN_CATEGORY` when unknown)."""
        if item_id is None:
            return NO_CATEGORY
        name = self.items.get(item_id)
        return UNKNOWN_CATEGORY if name is None else self._index.get(name, UNKNOWN_CATEGORY)


def category_indices(events: Sequence[Event], categories: CategoryVocab | None) -> np.ndarray:
    """(n,) int64 category rows of the events' items; without a vocabulary every item is unknown."""
    if categories is None:
        return np.fromiter(
            (NO_CATEGORY if e.item_id is None else UNKNOWN_CATEGORY for e in events), np.int64, len(events)
        )
    return np.fromiter((categories.index(e.item_id) for e in events), np.int64, len(events))

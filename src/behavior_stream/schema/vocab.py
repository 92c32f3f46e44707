"""The item catalog: a stable mapping from item ids to dense indices, with hashed OOV buckets.

Catalog items (seen in training) get indices `0 .. n_items-1` and are the only ones ranked.
An item never seen in training still gets an input embedding: one of `n_oov_buckets` rows
chosen by a stable hash, so a new item at serving time never crashes the model.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's `hash` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class ItemVocab:
    """Catalog item ids in index order, plus the number of OOV hash buckets."""

    items: tuple[str, ...]
    n_oov_buckets: int = 1024
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {item: i for i, item in enumerate(self.items)})

    @classmethod
    def build(
        cls, item_ids: Iterable[str | None], n_oov_buckets: int = 1024, min_count: int = 1
    ) -> ItemVocab:
        """Catalog from training item ids, most frequent first (ties in first-seen order)."""
        counts = Counter(i for i in item_ids if i is not None)
        items = tuple(item for item, c in counts.most_common() if c >= min_count)
        return cls(items, n_oov_buckets)

    @property
    def n_items(self) -> int:
        """Number of catalog (rankable) items."""
        return len(self.items)

    @property
    def n_inputs(self) -> int:
        """Rows of the input embedding: catalog + OOV buckets + one 'no item' row (search)."""
        return self.n_items + self.n_oov_buckets + 1

    @property
    def no_item(self) -> int:
        """Input index for events without an item (search)."""
        return self.n_items + self.n_oov_buckets

    def index(self, item_id: str | None) -> int | None:
        """Catalog index of an item, or None when it is not in the catalog."""
        if item_id is None:
            return None
        return self._index.get(item_id)

    def input_index(self, item_id: str | None) -> int:
        """Input-embedding row: catalog index, else a hashed OOV bucket, else the no-item row."""
        if item_id is None:
            return self.no_item
        idx = self._index.get(item_id)
        if idx is not None:
            return idx
        return self.n_items + stable_hash(item_id) % self.n_oov_buckets

    def lookup(self, indices: Sequence[int]) -> list[str]:
        """Item ids of catalog indices."""
        return [self.items[i] for i in indices]

    def to_dict(self) -> dict[str, object]:
        """Plain-type form for checkpoints (loadable with weights_only=True)."""
        return {"items": list(self.items), "n_oov_buckets": self.n_oov_buckets}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ItemVocab:
        """Inverse of `to_dict`; ValueError for a dict of another shape (input, so not an assert)."""
        items = data.get("items")
        buckets = data.get("n_oov_buckets")
        if not isinstance(items, list) or not isinstance(buckets, int) or isinstance(buckets, bool):
            raise ValueError("a vocabulary needs a list of items and an integer n_oov_buckets")
        return cls(tuple(str(i) for i in items), buckets)

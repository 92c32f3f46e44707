"""Trending items: item-event counts over a hopping event-time window (the cold-start feed).

The counts are kept per input partition, so that a partition's window can follow the
partition: the runtime persists each one under a reserved key of the user-state table
(`trending_key`, outside the `u:` user keys, so user counts and eviction never see it) and
restores it after table recovery, when the worker starts or is assigned the partition. It is
a heuristic, written every few seconds rather than in the exactly-once flush, so a crash may
lose the last seconds of counts; it never double-counts, because a window is only persisted
between batches, after the states of the users it counted are in the changelog (redelivered
records of those users are then skipped before they reach `add`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

import orjson

from behavior_stream.schema.events import Event

log = logging.getLogger(__name__)

TRENDING_PREFIX = b"t:trending:"
ENCODING_VERSION = 1
# Items kept per bucket in a persisted window: enough for the feeds (which read 4 x top_k) and
# small enough that a partition's record stays far below Kafka's 1 MB message limit.
MAX_PERSISTED_ITEMS = 512

Buckets = dict[int, Counter[str]]  # bucket index (event time // bucket_ms) -> item counts


def trending_key(partition: int) -> bytes:
    """Table key of an input partition's persisted window (reserved, never a user key)."""
    return TRENDING_PREFIX + str(partition).encode()


def encode_window(buckets: Buckets, bucket_ms: int, max_items: int = MAX_PERSISTED_ITEMS) -> bytes:
    """A partition's window as JSON: its bucket width and each bucket's `max_items` most counted
    items (the tail beyond that is dropped: the feeds only ever read the head)."""
    doc = {
        "v": ENCODING_VERSION,
        "bucket_ms": bucket_ms,
        "buckets": [[b, counts.most_common(max_items)] for b, counts in sorted(buckets.items()) if counts],
    }
    return orjson.dumps(doc)


def decode_window(data: bytes, bucket_ms: int) -> Buckets:
    """Inverse of `encode_window`, re-bucketed to `bucket_ms` if the width changed since it was
    written (a new `trending_window_s`); ValueError on anything else than a valid window."""
    try:
        doc = orjson.loads(data)
        if doc["v"] != ENCODING_VERSION:
            raise ValueError(f"trending window version {doc['v']!r}, expected {ENCODING_VERSION}")
        width = int(doc["bucket_ms"])
        out: Buckets = {}
        for b, items in doc["buckets"]:
            counts = out.setdefault(int(b) * width // bucket_ms, Counter())
            for item, count in items:
                if not isinstance(item, str) or int(count) <= 0:
                    raise ValueError(f"bad trending entry {item!r}: {count!r}")
                counts[item] += int(count)
        return out
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a trending window: {exc}") from exc


class TrendingWindow:
    """Counts of item events over the last `window_ms` of event time, in `n_buckets` hops.

    Kept per worker over the partitions it owns, one window per input partition and their sum
    for the queries: users are hashed to partitions at random, so each worker's window is a
    uniform sample of all traffic. The clock is the worker's newest event time: a partition
    that goes quiet expires with the others.
    """

    def __init__(self, window_ms: int = 3_600_000, n_buckets: int = 12) -> None:
        self.bucket_ms = max(1, window_ms // n_buckets)
        self.n_buckets = n_buckets
        self._parts: dict[int, Buckets] = {}
        self._total: Counter[str] = Counter()
        self._newest: int | None = None  # newest bucket index seen
        self._dirty: set[int] = set()  # partitions changed since `take_dirty`

    def add(self, events: Iterable[Event], partition: int = 0) -> None:
        """Count the item events of one input partition; events older than the window are ignored."""
        self.add_partitioned((partition, ev) for ev in events)

    def add_partitioned(self, events: Iterable[tuple[int, Event]]) -> None:
        """Count (input partition, event) pairs; events older than the window are ignored."""
        for partition, ev in events:
            if ev.item_id is None:
                continue
            b = ev.ts // self.bucket_ms
            if not self._advance(b):
                continue
            self._parts.setdefault(partition, {}).setdefault(b, Counter())[ev.item_id] += 1
            self._total[ev.item_id] += 1
            self._dirty.add(partition)

    def _advance(self, b: int) -> bool:
        """Move the clock to bucket `b` if it is newer; False if `b` is already out of the window."""
        if self._newest is None or b > self._newest:
            self._newest = b
            self._expire()
        return self._in_window(b)

    def _in_window(self, b: int) -> bool:
        return self._newest is not None and b > self._newest - self.n_buckets

    def _expire(self) -> None:
        assert self._newest is not None
        horizon = self._newest - self.n_buckets
        for partition, buckets in self._parts.items():
            for b in [b for b in buckets if b <= horizon]:
                self._subtract(buckets.pop(b))
                self._dirty.add(partition)

    def _subtract(self, counts: Counter[str]) -> None:
        for item, c in counts.items():
            left = self._total[item] - c
            if left > 0:
                self._total[item] = left
            else:
                del self._total[item]

    def top(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:
        """The `k` most frequent items in the window, without `exclude`."""
        skip = set(exclude)
        out = [(item, c) for item, c in self._total.most_common(k + len(skip)) if item not in skip]
        return out[:k]

    def partitions(self) -> set[int]:
        """Input partitions with a window in memory."""
        return set(self._parts)

    def encode(self, partition: int) -> bytes:
        """The partition's window as a table value (see `encode_window`)."""
        return encode_window(self._parts.get(partition, {}), self.bucket_ms)

    def merge(self, partition: int, buckets: Buckets) -> None:
        """Add counts to a partition's window; buckets outside the window are dropped."""
        newest = max((b for b, c in buckets.items() if c), default=None)
        if newest is None:
            return
        self._advance(newest)
        for b, counts in buckets.items():
            if counts and self._in_window(b):
                self._parts.setdefault(partition, {}).setdefault(b, Counter()).update(counts)
                self._total.update(counts)
                self._dirty.add(partition)

    def restore(self, partition: int, data: bytes) -> bool:
        """Replace a partition's window with a persisted one; False (and logged) if unreadable,
        which leaves the partition empty: a corrupt heuristic must not stop the worker."""
        self.drop(partition)
        try:
            buckets = decode_window(data, self.bucket_ms)
        except ValueError as exc:
            log.warning("trending window of partition %d not restored: %s", partition, exc)
            return False
        self.merge(partition, buckets)
        self._dirty.discard(partition)  # memory now equals the table
        return True

    def drop(self, partition: int) -> None:
        """Forget a partition's window (it was revoked: its new owner restores it)."""
        for counts in self._parts.pop(partition, {}).values():
            self._subtract(counts)
        self._dirty.discard(partition)

    def take_dirty(self) -> list[int]:
        """Partitions changed since the last call (to persist), and start tracking anew."""
        dirty, self._dirty = sorted(self._dirty & set(self._parts)), set()
        return dirty

    def mark_dirty(self, partitions: Iterable[int]) -> None:
        """Persist these partitions again at the next `take_dirty` (their write failed)."""
        self._dirty.update(partitions)

    def __len__(self) -> int:
        return len(self._total)

"""Trending items: item-event counts over a hopping event-time window (the cold-start feed)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from behavior_stream.schema.events import Event


class TrendingWindow:
    """Counts of item events over the last `window_ms` of event time, in `n_buckets` hops.

    Kept per worker over the partitions it owns: users are hashed to partitions at random, so
    each worker's window is a uniform sample of all traffic.
    """

    def __init__(self, window_ms: int = 3_600_000, n_buckets: int = 12) -> None:
        self.bucket_ms = max(1, window_ms // n_buckets)
        self.n_buckets = n_buckets
        self._buckets: deque[tuple[int, Counter[str]]] = deque()
        self._total: Counter[str] = Counter()

    def add(self, events: Iterable[Event]) -> None:
        """Count item events; events older than the window are ignored."""
        for ev in events:
            if ev.item_id is None:
                continue
            b = ev.ts // self.bucket_ms
            if self._buckets and b < self._buckets[0][0]:
                continue
            if not self._buckets or b > self._buckets[-1][0]:
                self._buckets.append((b, Counter()))
                self._expire(b)
            counts = self._bucket(b)
            counts[ev.item_id] += 1
            self._total[ev.item_id] += 1

    def _bucket(self, b: int) -> Counter[str]:
        for key, counts in reversed(self._buckets):
            if key == b:
                return counts
            if key < b:
                break
        # An out-of-order bucket inside the window: insert it in order.
        counts = Counter[str]()
        items = sorted([*self._buckets, (b, counts)], key=lambda kv: kv[0])
        self._buckets = deque(items)
        return counts

    def _expire(self, newest: int) -> None:
        while self._buckets and self._buckets[0][0] <= newest - self.n_buckets:
            _, old = self._buckets.popleft()
            self._total.subtract(old)
            for item in [i for i, c in self._total.items() if c <= 0]:
                del self._total[item]

    def top(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:
        """The `k` most frequent items in the window, without `exclude`."""
        skip = set(exclude)
        out = [(item, c) for item, c in self._total.most_common(k + len(skip)) if item not in skip]
        return out[:k]

    def __len__(self) -> int:
        return len(self._total)

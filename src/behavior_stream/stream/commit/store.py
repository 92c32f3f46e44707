"""The user-state table's store: in memory, written once per user per batch, never rolled back.

Faust sends a changelog record on every `table[key] = value`; the worker instead writes the
store directly and sends the batch's changelog records itself (see `Committer.flush` in
checkpoint.py, which also explains where this store fits in the exactly-once protocol).

Faust's recovery can hand the store changelog records that are older than what memory already
holds: records fetched past a lagging end offset are buffered and applied at the next
rebalance, and kept partitions are re-read from where the last recovery stopped. Applied
blindly, such a record rolls a user back by a batch while the input offsets move on, and that
batch's events are lost. `MonotonicMemoryStore` therefore tracks, per partition, the highest
changelog offset memory reflects (records it applied, and the worker's own acknowledged
writes) and ignores anything at or below it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import faust.stores
from faust.stores.memory import Store as FaustMemoryStore
from faust.types import TP, EventT

from behavior_stream.stream.core.state import USER_KEY_PREFIX

log = logging.getLogger(__name__)

STORE_SCHEME = "monotonic-memory"


class MonotonicMemoryStore(FaustMemoryStore):
    """Faust's memory store, except that changelog records memory already reflects are skipped."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # partition -> highest changelog offset reflected in memory
        self.reflected: dict[int, int] = {}
        self.skipped_records = 0
        self.skipped_stale = 0  # skipped records whose value differed from memory

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Apply recovery records in order, skipping those at or below the reflected offset."""
        fresh = []
        stale = 0
        for event in batch:
            m = event.message
            if m.offset <= self.reflected.get(m.partition, -1):
                self.skipped_records += 1
                if self.data.get(to_key(event.key)) != m.value:
                    stale += 1
                continue
            self.reflected[m.partition] = m.offset
            fresh.append(event)
        if stale:
            # Expected on every rebalance (kept partitions are re-read); applying these records
            # would have moved users back until the re-read caught up, or for good if it fell short.
            self.skipped_stale += stale
            log.info(
                "skipped %d changelog records older than the state in memory (%d so far)",
                stale,
                self.skipped_stale,
            )
        super().apply_changelog_batch(fresh, to_key, to_value)

    def mark_written(self, partition: int, offset: int) -> None:
        """The worker's own write at `offset` was acknowledged; memory already holds it."""
        if offset > self.reflected.get(partition, -1):
            self.reflected[partition] = offset

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Faust drops the keys of partitions no longer active; forget their offsets too."""
        await super().on_recovery_completed(active_tps, standby_tps)
        active = {tp.partition for tp in active_tps}
        for partition in [p for p in self.reflected if p not in active]:
            del self.reflected[partition]


faust.stores.STORES.aliases[STORE_SCHEME] = f"{__name__}:MonotonicMemoryStore"


class TableStore:
    """The user-state table's store as a plain mapping (no per-write changelog send)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> MonotonicMemoryStore:
        return self.table.data  # type: ignore[no-any-return,unused-ignore]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        return self._store.data.get(key, default)  # type: ignore[no-any-return,unused-ignore]

    def __getitem__(self, key: bytes) -> bytes:
        return self._store.data[key]  # type: ignore[no-any-return,unused-ignore]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._store.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._store.data[key]
        self._store._key_partition.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._store.data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._store.data)

    def __len__(self) -> int:
        return len(self._store.data)

    def note_partition(self, key: bytes, partition: int) -> None:
        """Remember a key's partition so Faust drops it when that partition is revoked."""
        self._store._key_partition[key] = partition

    def partition_of(self, key: bytes) -> int | None:
        """The partition a key was written to or recovered from."""
        return self._store._key_partition.get(key)  # type: ignore[no-any-return,unused-ignore]

    def mark_written(self, partition: int, offset: int) -> None:
        """Record that the changelog holds everything in memory for `partition` up to `offset`."""
        self._store.mark_written(partition, offset)

    def user_count(self) -> int:
        """Number of user states held (reserved keys excluded)."""
        return sum(1 for k in self._store.data if k.startswith(USER_KEY_PREFIX))

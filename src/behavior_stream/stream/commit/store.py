"""The user-state table's store: written once per user per batch, never rolled back.

Faust sends a changelog record on every `table[key] = value`; the worker instead writes the
store directly and sends the batch's changelog records itself (see `Committer.flush` in
checkpoint.py, which also explains where this store fits in the exactly-once protocol).

Faust's recovery can hand the store changelog records that are older than what the store already
holds: records fetched past a lagging end offset are buffered and applied at the next
rebalance, and kept partitions are re-read from where the last recovery stopped. Applied
blindly, such a record rolls a user back by a batch while the input offsets move on, and that
batch's events are lost. Both stores therefore track, per partition, the highest changelog
offset they reflect (records applied, and the worker's own acknowledged writes) and ignore
anything at or below it (`fresh_records`). Two stores share that rule and the `StateBackend`
interface `TableStore` needs: `MonotonicMemoryStore` here (memory only: a restart re-reads the
whole changelog) and `PersistentStore` in rocksdb_store.py (RocksDB: a restart reads the
changelog from the offset persisted with the data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Protocol

import faust.stores
from faust.stores.memory import Store as FaustMemoryStore
from faust.types import TP, EventT

from behavior_stream.stream.core.state import USER_KEY_PREFIX

log = logging.getLogger(__name__)

STORE_SCHEME = "monotonic-memory"
PERSISTENT_SCHEME = "monotonic-rocksdb"
StoreKind = Literal["memory", "rocksdb"]


def store_url(kind: StoreKind) -> str:
    """The Faust store URL of a store kind (the `store` setting)."""
    return f"{PERSISTENT_SCHEME if kind == 'rocksdb' else STORE_SCHEME}://"


def fresh_records(batch: Iterable[EventT], reflected: dict[int, int]) -> tuple[list[EventT], list[EventT]]:
    """Split recovery records into (fresh, skipped): a record at or below its partition's reflected
    offset is already in the store (applied before, or the worker's own acknowledged write);
    `reflected` advances over the fresh ones."""
    fresh, skipped = [], []
    for event in batch:
        m = event.message
        if m.offset <= reflected.get(m.partition, -1):
            skipped.append(event)
            continue
        reflected[m.partition] = m.offset
        fresh.append(event)
    return fresh, skipped


class StateBackend(Protocol):
    """What `TableStore` (hence the core, the Committer and the runtime) needs of a store."""

    def get_value(self, key: bytes) -> bytes | None: ...
    def put_value(self, key: bytes, value: bytes) -> None: ...
    def remove_value(self, key: bytes) -> None: ...
    def has_value(self, key: bytes) -> bool: ...
    def iter_keys(self) -> Iterator[bytes]: ...
    def note_partition(self, key: bytes, partition: int) -> None: ...
    def partition_of(self, key: bytes) -> int | None: ...
    def mark_written(self, partition: int, offset: int) -> None: ...
    def user_count(self) -> int: ...
    def recovery_counts(self) -> tuple[int, int]: ...


class MonotonicMemoryStore(FaustMemoryStore):
    """Faust's memory store, except that changelog records memory already reflects are skipped."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # partition -> highest changelog offset reflected in memory
        self.reflected: dict[int, int] = {}
        self.applied_records = 0
        self.skipped_records = 0
        self.skipped_stale = 0  # skipped records whose value differed from memory

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Apply recovery records in order, skipping those at or below the reflected offset."""
        fresh, skipped = fresh_records(batch, self.reflected)
        self.skipped_records += len(skipped)
        stale = sum(1 for e in skipped if self.data.get(to_key(e.key)) != e.message.value)
        if stale:
            # Expected on every rebalance (kept partitions are re-read); applying these records
            # would have moved users back until the re-read caught up, or for good if it fell short.
            self.skipped_stale += stale
            log.info(
                "skipped %d changelog records older than the state in memory (%d so far)",
                stale,
                self.skipped_stale,
            )
        self.applied_records += len(fresh)
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

    # StateBackend: plain dict operations on Faust's `data` (the hot path stays a dict lookup).
    def get_value(self, key: bytes) -> bytes | None:
        """The value held for `key`, None if none."""
        return self.data.get(key)  # type: ignore[no-any-return,unused-ignore]

    def put_value(self, key: bytes, value: bytes) -> None:
        """Hold `value` for `key` (the Committer sends it to the changelog)."""
        self.data[key] = value

    def remove_value(self, key: bytes) -> None:
        """Drop `key` (KeyError if not held) and its partition."""
        del self.data[key]
        self._key_partition.pop(key, None)

    def has_value(self, key: bytes) -> bool:
        """Whether `key` is held."""
        return key in self.data

    def iter_keys(self) -> Iterator[bytes]:
        """Every key held, reserved keys (watermarks) included."""
        return iter(self.data)

    def note_partition(self, key: bytes, partition: int) -> None:
        """Remember a key's partition so Faust drops it when that partition is revoked."""
        self._key_partition[key] = partition

    def partition_of(self, key: bytes) -> int | None:
        """The partition a key was written to or recovered from."""
        return self._key_partition.get(key)  # type: ignore[no-any-return,unused-ignore]

    def user_count(self) -> int:
        """Number of user states held (reserved keys excluded)."""
        return sum(1 for k in self.data if k.startswith(USER_KEY_PREFIX))

    def recovery_counts(self) -> tuple[int, int]:
        """Changelog records (applied, skipped) by recovery since the worker started."""
        return self.applied_records, self.skipped_records


faust.stores.STORES.aliases[STORE_SCHEME] = f"{__name__}:MonotonicMemoryStore"
# A string, so rocksdict is imported only when the persistent store is chosen.
faust.stores.STORES.aliases[PERSISTENT_SCHEME] = "behavior_stream.stream.commit.rocksdb_store:PersistentStore"


class TableStore:
    """The user-state table's store as a plain mapping (no per-write changelog send)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def backend(self) -> StateBackend:
        """The table's Faust store (either kind)."""
        return self.table.data  # type: ignore[no-any-return,unused-ignore]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        """The value of `key`, `default` if none."""
        value = self.backend.get_value(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value = self.backend.get_value(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.backend.put_value(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.backend.remove_value(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.backend.has_value(key)

    def __iter__(self) -> Iterator[bytes]:
        return self.backend.iter_keys()

    def __len__(self) -> int:
        return sum(1 for _ in self.backend.iter_keys())

    def note_partition(self, key: bytes, partition: int) -> None:
        """Remember a key's partition (Faust drops it when that partition is revoked; the
        persistent store writes it to that partition's database at the next fence)."""
        self.backend.note_partition(key, partition)

    def partition_of(self, key: bytes) -> int | None:
        """The partition a key was written to or recovered from."""
        return self.backend.partition_of(key)

    def mark_written(self, partition: int, offset: int) -> None:
        """Record that the changelog holds everything in the store for `partition` up to `offset`."""
        self.backend.mark_written(partition, offset)

    def user_count(self) -> int:
        """Number of user states held (reserved keys excluded)."""
        return self.backend.user_count()

    def recovery_counts(self) -> tuple[int, int]:
        """Changelog records (applied, skipped) by recovery since the worker started."""
        return self.backend.recovery_counts()

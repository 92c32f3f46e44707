"""The persistent user-state store: Faust's RocksDB store (rocksdict), fenced writes, no rollback.

A restart reads the changelog only past the offset persisted with the local data, instead of
from the beginning. Exactness needs the local data and that offset to agree at every instant a
process can die, so nothing reaches RocksDB before the changelog holds it:

- The core's writes (`put_value`, `remove_value`) stay in `pending`, in memory; reads see them
  first. `note_partition` (the Committer, before it sends the state records) files a key
  under its changelog partition.
- `mark_written(partition, offset)` comes after the partition's fence (or tombstone) was
  acknowledged, so every filed write of that partition is in the changelog at or below
  `offset`: they go to that partition's database in one atomic `WriteBatch`, together with
  `offset` (Faust's own offset key, which its recovery seeks from) and the partition's user
  count. A crash before the batch leaves the previous consistent point; after it, the new one.
- Recovery (`apply_changelog_batch`) keeps the memory store's rule (`fresh_records`): a record
  at or below the reflected offset is skipped; fresh records are written per partition in one
  batch with the new offset.

RocksDB writes its WAL to the OS on every write, so a SIGKILL loses nothing acknowledged
locally; the WAL is not fsynced, so after a power loss the changelog re-supplies what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as FaustRocksStore
from faust.types import TP, EventT

from behavior_stream.stream.commit.store import fresh_records
from behavior_stream.stream.core.state import USER_KEY_PREFIX

log = logging.getLogger(__name__)

COUNT_KEY = b"__behavior_stream\0users__"
_ABSENT = object()


class PersistentStore(FaustRocksStore):
    """RocksDB per changelog partition (Faust's layout); writes land only behind a fence."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        kwargs["driver"] = "rocksdict"  # the binding faust-streaming 0.15 supports
        super().__init__(url, app, table, **kwargs)
        self.reflected: dict[int, int] = {}  # partition -> highest changelog offset on disk
        self.users: dict[int, int] = {}  # partition -> user keys on disk
        self.pending: dict[bytes, bytes | None] = {}  # written, not yet fenced (None: deleted)
        self.filed: dict[int, dict[bytes, None]] = {}  # partition -> pending keys sent there
        self.key_partition: dict[bytes, int] = {}  # partition of each pending key
        # Where the core's read found a pending key on disk (None: absent), so a fence needs
        # no second lookup to keep the user count and to drop a copy left in another partition.
        self.origin: dict[bytes, int | None] = {}
        self.applied_records = 0
        self.skipped_records = 0

    # Opening and closing partitions.
    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        raw = db.get(self.offset_key)
        if raw is not None:
            self.reflected[partition] = int(raw)
        count = db.get(COUNT_KEY)
        self.users[partition] = int(count) if count is not None else self._scan_users(db)
        log.info(
            "state partition %d opened: %d users on disk, changelog offset %s",
            partition,
            self.users[partition],
            self.reflected.get(partition),
        )
        return db

    def _scan_users(self, db: Any) -> int:
        return sum(1 for k in db.keys() if k.startswith(USER_KEY_PREFIX))  # noqa: SIM118 (raw-mode Rdict)

    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        """Close the databases of revoked partitions (their unfenced writes are the changelog's
        to supply to the next owner) and forget their offsets; the files stay for a return."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._close_partition(tp.partition)

    def _close_partition(self, partition: int) -> None:
        for key in self.filed.pop(partition, {}):
            self.pending.pop(key, None)
            self.key_partition.pop(key, None)
            self.origin.pop(key, None)
        self.origin.clear()  # some entries may name this partition; the cache refills on reads
        self.reflected.pop(partition, None)
        self.users.pop(partition, None)
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Close any partition that recovery left open but this worker does not own."""
        await super().on_recovery_completed(active_tps, standby_tps)
        active = {tp.partition for tp in active_tps}
        for partition in [p for p in self._dbs if p not in active]:
            self._close_partition(partition)

    async def stop(self) -> None:
        """Flush memtables and close, so the next start opens without replaying the WAL."""
        for partition in list(self._dbs):
            self._dbs[partition].flush()
            self._close_partition(partition)
        await super().stop()

    # Recovery.
    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """Write fresh recovery records per partition, each batch with its new offset."""
        events = list(batch)
        for partition in {e.message.partition for e in events}:
            self._db_for_partition(partition)  # loads the partition's persisted offset first
        fresh, skipped = fresh_records(events, self.reflected)
        self.skipped_records += len(skipped)
        self.applied_records += len(fresh)
        by_partition: dict[int, dict[bytes, bytes | None]] = {}
        for event in fresh:
            m = event.message
            if m.key is None:  # never written by the Committer; nothing to key it by
                continue
            # A later record of the same key in this batch wins, as applying in order would.
            by_partition.setdefault(m.partition, {})[m.key] = m.value
        for partition, writes in by_partition.items():
            for key in writes:
                # The changelog is newer than any unfenced write of the key (see the docstring).
                self._forget_pending(key)
            db = self._dbs[partition]
            existed = {k: db.get(k) is not None for k in writes if k.startswith(USER_KEY_PREFIX)}
            self._persist(partition, writes, existed, {})

    # The hot path and the fences.
    def get_value(self, key: bytes) -> bytes | None:
        """The value of `key`: its pending write, else what a partition's database holds."""
        value = self.pending.get(key, _ABSENT)
        if value is not _ABSENT:
            return value  # type: ignore[return-value]
        partition, value = self._find(key)
        # Bounded: lookups without writes (the API) must not grow it for ever.
        if key in self.origin or len(self.origin) < 100_000:
            self.origin[key] = partition
        return value

    def _find(self, key: bytes) -> tuple[int | None, bytes | None]:
        for partition, db in self._dbs.items():
            value = db.get(key)
            if value is not None:
                return partition, value
        return None, None

    def put_value(self, key: bytes, value: bytes) -> None:
        """Hold `value` for `key` until its partition's next fence."""
        self.pending[key] = value

    def remove_value(self, key: bytes) -> None:
        """Delete `key` (KeyError if absent); the deletion reaches disk at the partition's next fence."""
        if self.get_value(key) is None:
            raise KeyError(key)
        partition = self.partition_of(key)
        self.pending[key] = None
        if partition is not None:
            self.note_partition(key, partition)

    def has_value(self, key: bytes) -> bool:
        """Whether `key` has a value."""
        return self.get_value(key) is not None

    def note_partition(self, key: bytes, partition: int) -> None:
        """File the key's pending write under the changelog partition it is being sent to."""
        previous = self.key_partition.get(key)
        if previous is not None and previous != partition:
            self.filed.get(previous, {}).pop(key, None)
        self.key_partition[key] = partition
        self.filed.setdefault(partition, {})[key] = None

    def partition_of(self, key: bytes) -> int | None:
        """The partition a key was written to, or whose database holds it."""
        partition = self.key_partition.get(key)
        return partition if partition is not None else self._find(key)[0]

    def mark_written(self, partition: int, offset: int) -> None:
        """The changelog holds every filed write of `partition` up to `offset`: persist them with it."""
        self._db_for_partition(partition)  # opened before `reflected` moves (opening loads it)
        if offset > self.reflected.get(partition, -1):
            self.reflected[partition] = offset
        writes: dict[bytes, bytes | None] = {}
        existed: dict[bytes, bool] = {}
        moved: dict[bytes, int] = {}
        for key in self.filed.pop(partition, {}):
            writes[key] = self.pending.pop(key, None)
            self.key_partition.pop(key, None)
            origin = self.origin.pop(key) if key in self.origin else self._find(key)[0]
            existed[key] = origin == partition
            if origin is not None and origin != partition:
                moved[key] = origin
        self._persist(partition, writes, existed, moved)

    def _forget_pending(self, key: bytes) -> None:
        self.pending.pop(key, None)
        self.origin.pop(key, None)
        previous = self.key_partition.pop(key, None)
        if previous is not None:
            self.filed.get(previous, {}).pop(key, None)

    def _persist(
        self,
        partition: int,
        writes: dict[bytes, bytes | None],
        existed: dict[bytes, bool],
        moved: dict[bytes, int],
    ) -> None:
        """One atomic batch: the writes, the reflected offset and the user count (`existed`: whether
        each key was in this partition's database); then drop the old copies of keys that moved
        here from another partition (rare: a user whose records changed partition)."""
        db = self._db_for_partition(partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        users = self.users.get(partition, 0)
        for key, value in writes.items():
            if key.startswith(USER_KEY_PREFIX):
                users += int(value is not None) - int(existed.get(key, False))
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.users[partition] = users
        if partition in self.reflected:
            batch.put(self.offset_key, str(self.reflected[partition]).encode())
        batch.put(COUNT_KEY, str(users).encode())
        db.write(batch)
        for key, other in moved.items():
            old = self._dbs.get(other)
            if old is not None and old.get(key) is not None:
                old.delete(key)
                self.users[other] = self.users.get(other, 0) - int(key.startswith(USER_KEY_PREFIX))

    # Reads over everything held.
    def iter_keys(self) -> Iterator[bytes]:
        """Every key with a value (pending first, then each partition's database)."""
        for key, value in self.pending.items():
            if value is not None:
                yield key
        for db in list(self._dbs.values()):
            for key in db.keys():  # noqa: SIM118 (iterating a raw-mode Rdict fails)
                if key not in self.pending and key != self.offset_key and key != COUNT_KEY:
                    yield key

    def user_count(self) -> int:
        """User states held: the persisted counts plus the pending writes' difference."""
        total = sum(self.users.get(p, 0) for p in self._dbs)
        for key, value in self.pending.items():
            if key.startswith(USER_KEY_PREFIX):
                origin = self.origin[key] if key in self.origin else self._find(key)[0]
                total += int(value is not None) - int(origin is not None)
        return total

    def recovery_counts(self) -> tuple[int, int]:
        """Changelog records (applied, skipped) by recovery since the worker started."""
        return self.applied_records, self.skipped_records

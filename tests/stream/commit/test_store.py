"""The user-state stores never let a changelog record roll state back; the RocksDB store persists
only fenced writes, with the offset they reflect."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from behavior_stream.stream.commit.rocksdb_store import PersistentStore
from behavior_stream.stream.commit.store import MonotonicMemoryStore, StoreKind, TableStore, store_url

CHANGELOG = "app-user-state-changelog"
KINDS: tuple[StoreKind, ...] = ("memory", "rocksdb")


def make_store(kind: StoreKind = "memory", datadir: Path | None = None) -> TableStore:
    """A table store of either kind (the RocksDB one under `datadir`)."""
    extra: dict[str, Any] = {} if datadir is None else {"datadir": str(datadir)}
    app = faust.App("table-store-test", store=store_url(kind), autodiscover=False, **extra)
    table = app.Table("user-state", partitions=4, key_type=bytes, value_type=bytes)
    assert isinstance(table.data, PersistentStore if kind == "rocksdb" else MonotonicMemoryStore)
    return TableStore(table)


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TableStore:
    return make_store(request.param, tmp_path)


def record(partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    message = SimpleNamespace(topic=CHANGELOG, partition=partition, offset=offset, key=key, value=value)
    return SimpleNamespace(key=key, value=value, message=message)


def apply(store: TableStore, *records: Any) -> None:
    store.table.data.apply_changelog_batch(list(records), lambda k: k, lambda v: v)


def contents(store: TableStore) -> dict[bytes, bytes]:
    return {k: store[k] for k in store}


def test_recovery_applies_records_in_order_including_tombstones(store: TableStore) -> None:
    apply(store, record(0, 0, b"u:a", b"1"), record(0, 1, b"u:b", b"1"), record(0, 2, b"u:a", b"2"))
    apply(store, record(0, 3, b"u:b", None))
    assert contents(store) == {b"u:a": b"2"}
    assert store.partition_of(b"u:a") == 0 and store.partition_of(b"u:b") is None
    assert store.user_count() == 1
    assert store.recovery_counts() == (4, 0)


def test_records_the_worker_already_wrote_are_not_reapplied(store: TableStore) -> None:
    apply(store, record(1, 0, b"u:a", b"old"))
    # The worker moved the user on and its write (and the fence after it) was acknowledged.
    store[b"u:a"] = b"new"
    store.note_partition(b"u:a", 1)
    store.mark_written(1, 5)
    # A rebalance re-reads the partition from where the last recovery stopped, and a record
    # buffered from before (offset 0, fetched past a lagging end offset) is applied late.
    apply(
        store, record(1, 0, b"u:a", b"old"), record(1, 3, b"u:a", b"new"), record(1, 5, b"w:watermark", b"{}")
    )
    assert store[b"u:a"] == b"new"
    assert store.recovery_counts() == (1, 3)
    # Later records, e.g. written by another worker that owned the partition meanwhile, apply.
    apply(store, record(1, 6, b"u:a", b"newer"))
    assert store[b"u:a"] == b"newer"
    assert store.recovery_counts() == (2, 3)


def test_memory_counts_skipped_records_that_differ_from_memory() -> None:
    store = make_store()
    apply(store, record(1, 0, b"u:a", b"old"))
    store[b"u:a"] = b"new"
    store.mark_written(1, 5)
    apply(store, record(1, 0, b"u:a", b"old"), record(1, 3, b"u:a", b"new"))
    assert store.table.data.skipped_stale == 1


def test_offsets_are_tracked_per_partition(store: TableStore) -> None:
    store.mark_written(0, 100)
    apply(store, record(2, 3, b"u:c", b"x"), record(0, 50, b"u:d", b"y"))
    assert b"u:c" in store and b"u:d" not in store


def test_a_partition_lost_in_a_rebalance_comes_back_from_what_this_worker_reflects(store: TableStore) -> None:
    apply(store, record(0, 7, b"u:a", b"1"), record(1, 9, b"u:b", b"1"))
    store.note_partition(b"u:a", 0)
    active = {TP(CHANGELOG, 1)}
    asyncio.run(store.table.data.on_recovery_completed(active, set()))
    assert b"u:a" not in store and b"u:b" in store
    # Memory recovers partition 0 from scratch; RocksDB from the offset on disk (7, so the
    # record is skipped and the value read from disk). Both skip the stale record of partition 1.
    apply(store, record(0, 7, b"u:a", b"1"), record(1, 9, b"u:b", b"stale"))
    assert store[b"u:a"] == b"1" and store[b"u:b"] == b"1"


def test_erase_and_user_count(store: TableStore) -> None:
    apply(store, record(2, 0, b"u:a", b"1"), record(2, 1, b"u:b", b"1"), record(2, 2, b"w:2", b"{}"))
    store[b"u:c"] = b"1"
    store.note_partition(b"u:c", 3)
    assert store.user_count() == 3  # the watermark key is not a user
    del store[b"u:a"]
    assert b"u:a" not in store and store.user_count() == 2
    store.mark_written(2, 3)
    store.mark_written(3, 0)
    assert store.user_count() == 2 and sorted(store) == [b"u:b", b"u:c", b"w:2"]


def reopen(store: TableStore, datadir: Path) -> TableStore:
    asyncio.run(store.table.data.stop())
    return make_store("rocksdb", datadir)


def test_rocksdb_persists_fenced_writes_with_their_offset(tmp_path: Path) -> None:
    store = make_store("rocksdb", tmp_path)
    apply(store, record(0, 0, b"u:a", b"1"), record(0, 1, b"u:b", b"1"), record(1, 0, b"u:x", b"1"))
    # A batch: the core writes two users, the Committer files them under partition 0, sends
    # them (offsets 2 and 3) and the fence (4), whose acknowledgement persists them.
    store[b"u:a"], store[b"u:c"] = b"2", b"1"
    store.note_partition(b"u:a", 0)
    store.note_partition(b"u:c", 0)
    store[b"w:0"] = b'{"events": 9}'
    store.note_partition(b"w:0", 0)
    store.mark_written(0, 4)
    # The next batch was written by the core and sent, but its fence was never acknowledged.
    store[b"u:b"] = b"2"
    store.note_partition(b"u:b", 0)
    store[b"u:x"] = b"2"
    assert store[b"u:b"] == b"2" and store.user_count() == 4
    store = reopen(store, tmp_path)
    assert contents(store) == {}  # nothing is opened before Faust assigns (or recovery reads) it
    persistent = store.table.data
    assert persistent.persisted_offset(TP(CHANGELOG, 0)) == 4
    assert persistent.persisted_offset(TP(CHANGELOG, 1)) == 0
    assert contents(store) == {
        b"u:a": b"2",
        b"u:b": b"1",
        b"u:c": b"1",
        b"w:0": b'{"events": 9}',
        b"u:x": b"1",
    }
    assert store.user_count() == 4
    # Recovery reads from the persisted offset: everything at or below it is skipped, the
    # unfenced batch's record (5) and its fence (6) apply.
    apply(
        store, record(0, 4, b"w:0", b'{"events": 9}'), record(0, 5, b"u:b", b"2"), record(0, 6, b"w:0", b"{}")
    )
    assert store.recovery_counts() == (2, 1)
    assert store[b"u:b"] == b"2" and store[b"w:0"] == b"{}"
    store = reopen(store, tmp_path)
    assert store.table.data.persisted_offset(TP(CHANGELOG, 0)) == 6 and store.user_count() == 3
    assert store.table.data.persisted_offset(TP(CHANGELOG, 1)) == 0 and store.user_count() == 4
    assert store[b"u:b"] == b"2" and store[b"u:x"] == b"1"


def test_rocksdb_tombstones_reach_disk_at_the_fence(tmp_path: Path) -> None:
    store = make_store("rocksdb", tmp_path)
    apply(store, record(3, 0, b"u:a", b"1"), record(3, 1, b"u:b", b"1"))
    del store[b"u:a"]  # Committer.erase: memory first, then the tombstone (offset 2) is acknowledged
    store.mark_written(3, 2)
    del store[b"u:b"]  # its tombstone is never acknowledged
    assert store.user_count() == 0
    store = reopen(store, tmp_path)
    assert store.table.data.persisted_offset(TP(CHANGELOG, 3)) == 2
    assert contents(store) == {b"u:b": b"1"} and store.user_count() == 1

"""The user-state store never lets a changelog record roll memory back."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from faust.types import TP

from behavior_stream.stream.commit.store import STORE_SCHEME, MonotonicMemoryStore, TableStore

CHANGELOG = "app-user-state-changelog"


def make_store() -> TableStore:
    app = faust.App("table-store-test", store=f"{STORE_SCHEME}://", autodiscover=False)
    table = app.Table("user-state", partitions=4, key_type=bytes, value_type=bytes)
    assert isinstance(table.data, MonotonicMemoryStore)
    return TableStore(table)


def record(partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    message = SimpleNamespace(topic=CHANGELOG, partition=partition, offset=offset, key=key, value=value)
    return SimpleNamespace(key=key, value=value, message=message)


def apply(store: TableStore, *records: Any) -> None:
    store.table.data.apply_changelog_batch(list(records), lambda k: k, lambda v: v)


def test_recovery_applies_records_in_order_including_tombstones() -> None:
    store = make_store()
    apply(store, record(0, 0, b"u:a", b"1"), record(0, 1, b"u:b", b"1"), record(0, 2, b"u:a", b"2"))
    apply(store, record(0, 3, b"u:b", None))
    assert dict(store.table.data.data) == {b"u:a": b"2"}
    assert store.partition_of(b"u:a") == 0 and store.partition_of(b"u:b") is None


def test_records_the_worker_already_wrote_are_not_reapplied() -> None:
    store = make_store()
    apply(store, record(1, 0, b"u:a", b"old"))
    # The worker moved the user on and its write (and the fence after it) was acknowledged.
    store[b"u:a"] = b"new"
    store.mark_written(1, 5)
    # A rebalance re-reads the partition from where the last recovery stopped, and a record
    # buffered from before (offset 0, fetched past a lagging end offset) is applied late.
    apply(
        store, record(1, 0, b"u:a", b"old"), record(1, 3, b"u:a", b"new"), record(1, 5, b"w:watermark", b"{}")
    )
    assert store[b"u:a"] == b"new"
    memory = store.table.data
    assert memory.skipped_records == 3 and memory.skipped_stale == 2
    # Later records, e.g. written by another worker that owned the partition meanwhile, apply.
    apply(store, record(1, 6, b"u:a", b"newer"))
    assert store[b"u:a"] == b"newer"


def test_offsets_are_tracked_per_partition() -> None:
    store = make_store()
    store.mark_written(0, 100)
    apply(store, record(2, 3, b"u:c", b"x"), record(0, 50, b"u:d", b"y"))
    assert b"u:c" in store and b"u:d" not in store


def test_a_partition_lost_in_a_rebalance_is_recovered_from_scratch_when_it_comes_back() -> None:
    store = make_store()
    apply(store, record(0, 7, b"u:a", b"1"), record(1, 9, b"u:b", b"1"))
    store.note_partition(b"u:a", 0)
    active = {TP(CHANGELOG, 1)}
    asyncio.run(store.table.data.on_recovery_completed(active, set()))
    assert b"u:a" not in store and b"u:b" in store
    apply(store, record(0, 7, b"u:a", b"1"), record(1, 9, b"u:b", b"stale"))
    assert store[b"u:a"] == b"1" and store[b"u:b"] == b"1"

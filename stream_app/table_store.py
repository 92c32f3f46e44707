"""The user-state table's in-memory store as a plain mapping, written once per user per batch.

Faust sends a changelog record on every `table[key] = value`; the worker instead writes the
store directly and sends the batch's changelog records itself (see `Runtime.flush`). The key's
partition is recorded as Faust's memory store does, so revoked partitions are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stream_app.state import USER_KEY_PREFIX


class TableStore:
    """The user-state table's in-memory store as a plain mapping (no per-write changelog send)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @property
    def _store(self) -> Any:
        return self.table.data

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

    def user_count(self) -> int:
        """Number of user states held (reserved keys excluded)."""
        return sum(1 for k in self._store.data if k.startswith(USER_KEY_PREFIX))

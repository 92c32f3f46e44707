"""The state as the processing core sees it while earlier batches are still being written.

The Committer overlaps batches (checkpoint.py): batch N+1 is computed while batch N's state
records are not yet sent. The table's store must not see N+1's values before N's are written
and fenced: the RocksDB store persists, at a fence, the pending value of every key filed for
that partition, which would then be N+1's value under N's offset, local data ahead of the
changelog. So the core reads and writes this overlay: computed values stay here (`staged`)
and reach the table's store only when the Committer sends them, in batch order (`settle`).
Reads see the newest computed value, staged or stored. Once the Committer is drained the
overlay is empty and the table's store alone is the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping

from behavior_stream.stream.commit.store import TableStore
from behavior_stream.stream.core.state import USER_KEY_PREFIX

_ABSENT_MAX = 100_000  # bound of the keys remembered as missing (read, not yet written)


class StagedStore(MutableMapping[bytes, bytes]):
    """A write-back overlay over the table's store: the core's view of the state."""

    def __init__(self, backend: TableStore) -> None:
        self.backend = backend
        self.staged: dict[bytes, bytes] = {}
        # Users created so far: a read that found no state, then a write (how the core creates
        # one). Counted here so the users gauge never scans the store (Runtime.user_count).
        self.created = 0
        self._absent: set[bytes] = set()

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        """The newest value of `key`: staged, else stored; `default` if neither."""
        value = self.staged.get(key)
        if value is not None:
            return value
        value = self.backend.get(key)
        if value is None:
            if key.startswith(USER_KEY_PREFIX) and len(self._absent) < _ABSENT_MAX:
                self._absent.add(key)
            return default
        return value

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self._absent and key in self._absent:
            self._absent.discard(key)
            self.created += 1
        self.staged[key] = value

    def __delitem__(self, key: bytes) -> None:
        # Deletions (erasure, eviction) go to the table's store after a drain; here for the ABC.
        found = self.staged.pop(key, None) is not None
        if key in self.backend:
            del self.backend[key]
        elif not found:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.staged or key in self.backend

    def __iter__(self) -> Iterator[bytes]:
        yield from self.staged
        for key in self.backend:
            if key not in self.staged:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def settle(self, writes: Mapping[bytes, bytes], partition: int) -> None:
        """Move one batch's values of one changelog partition into the table's store, filed under
        that partition (called as they are sent). A key staged again by a later batch keeps its
        newer staged value; the store gets this batch's, which is what is being sent."""
        staged, backend = self.staged, self.backend
        for key, value in writes.items():
            backend[key] = value
            backend.note_partition(key, partition)
            if staged.get(key) is value:
                del staged[key]

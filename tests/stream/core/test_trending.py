"""The trending window: per-partition counts, expiry, the persisted encoding, merge and restore."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.stream.core.state import user_of_key
from behavior_stream.stream.core.trending import (
    TrendingWindow,
    decode_window,
    encode_window,
    trending_key,
)

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (5 * MINUTE)  # on a bucket boundary


def clicks(items: list[str], ts: int, user: str = "u") -> list[Event]:
    return [make_event(user, EventType.CLICK, ts, item) for item in items]


def window() -> TrendingWindow:
    return TrendingWindow(window_ms=60 * MINUTE, n_buckets=12)  # 5-minute buckets


def test_counts_sum_over_partitions_and_skip_searches() -> None:
    w = window()
    w.add(clicks(["a", "a", "b"], T0), partition=0)
    w.add(clicks(["a", "c"], T0 + MINUTE), partition=3)
    w.add([make_event("u", EventType.SEARCH, T0, None, query="shoes")], partition=1)
    assert w.top(10) == [("a", 3), ("b", 1), ("c", 1)]
    assert w.top(1, exclude=["a"]) == [("b", 1)]
    assert w.partitions() == {0, 3}  # a search has no item: partition 1 holds nothing
    assert w.take_dirty() == [0, 3]
    assert w.take_dirty() == []


def test_old_buckets_expire_on_the_workers_clock() -> None:
    w = window()
    w.add(clicks(["old"], T0), partition=0)
    w.add(clicks(["new"], T0 + 61 * MINUTE), partition=1)  # partition 0 went quiet: it expires too
    assert w.top(10) == [("new", 1)]
    w.add(clicks(["late"], T0 + MINUTE), partition=1)  # older than the window: ignored
    assert w.top(10) == [("new", 1)]
    assert orjson.loads(w.encode(0))["buckets"] == []  # the expired partition is persisted empty


def test_encode_decode_round_trip_and_rebucketing() -> None:
    buckets = {100: Counter({"a": 5, "b": 2}), 101: Counter({"c": 1}), 102: Counter()}
    data = encode_window(buckets, bucket_ms=5 * MINUTE)
    assert decode_window(data, bucket_ms=5 * MINUTE) == {
        100: Counter({"a": 5, "b": 2}),
        101: Counter({"c": 1}),
    }
    # A wider bucket (a new window setting) folds the old buckets into it.
    assert decode_window(data, bucket_ms=10 * MINUTE) == {50: Counter({"a": 5, "b": 2, "c": 1})}


def test_encoding_keeps_the_head_of_each_bucket() -> None:
    counts = Counter({f"i{n}": 1000 - n for n in range(600)})
    decoded = decode_window(encode_window({7: counts}, bucket_ms=1, max_items=512), bucket_ms=1)
    assert len(decoded[7]) == 512
    assert decoded[7].most_common(80) == counts.most_common(80)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"v": 2, "bucket_ms": 1, "buckets": []}',
        b'{"v": 1, "bucket_ms": 1, "buckets": [[1, [[3, 1]]]]}',
    ],
)
def test_decode_refuses_what_is_not_a_window(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_window(data, bucket_ms=1)


def test_restore_replaces_a_partition_and_merge_adds() -> None:
    source = window()
    source.add(clicks(["a", "a", "b"], T0), partition=2)
    source.add(clicks(["c"], T0), partition=1)
    saved = source.encode(2)

    target = window()
    target.add(clicks(["z"], T0 + MINUTE), partition=2)  # stale counts of a partition it is given
    target.add(clicks(["a"], T0 + MINUTE), partition=0)
    assert target.restore(2, saved)
    assert target.top(10) == [("a", 3), ("b", 1)]
    assert target.take_dirty() == [0]  # a restored window equals the table: no rewrite

    target.merge(1, decode_window(source.encode(1), target.bucket_ms))
    assert dict(target.top(10)) == {"a": 3, "b": 1, "c": 1}
    target.drop(2)
    assert dict(target.top(10)) == {"a": 1, "c": 1}
    assert target.partitions() == {0, 1}


def test_restore_of_a_corrupt_value_leaves_the_partition_empty() -> None:
    w = window()
    w.add(clicks(["a"], T0), partition=4)
    assert not w.restore(4, b"not json")
    assert w.top(10) == []
    assert 4 not in w.partitions()


def test_restored_buckets_outside_the_window_are_dropped() -> None:
    w = window()
    w.add(clicks(["now"], T0 + 2 * 60 * MINUTE), partition=0)
    old = encode_window({T0 // w.bucket_ms: Counter({"old": 9})}, w.bucket_ms)
    assert w.restore(1, old)
    assert w.top(10) == [("now", 1)]


def test_trending_keys_are_reserved() -> None:
    assert trending_key(3) == b"t:trending:3"
    assert user_of_key(trending_key(3)) is None  # user counts and eviction skip it

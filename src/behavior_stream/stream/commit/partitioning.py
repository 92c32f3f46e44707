"""Kafka's default partitioner, the one place the worker, replay and benchmarks map keys to partitions.

It lives with the commit protocol because the batch sender partitions output messages with it,
and the whole stream (replay, the API's routing, the re-keying of unkeyed records) must agree
with the Java client and aiokafka on where a key goes.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, n_partitions: int) -> int:
    """Kafka's default partition of a key (murmur2, as the Java client and aiokafka use)."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions

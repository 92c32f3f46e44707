"""The ceiling: how fast a bare aiokafka consumer drains the pre-loaded topic (`getmany`, no work)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings
from benchmarks.rates import Rate
from benchmarks.workload import Workload


async def _drain(settings: Settings, topic: str, target: int, cap_s: float) -> Rate:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        per_fetch = max(100, min(10_000, target // 20))  # several fetches even in a quick run
        total, counted, first, last = 0, 0, 0.0, 0.0
        while total < target and last - first <= cap_s:
            batch = await consumer.getmany(timeout_ms=1000, max_records=per_fetch)
            got = sum(len(msgs) for msgs in batch.values())
            if not got:
                break
            last = time.perf_counter()
            if total == 0:
                first = last  # the clock starts at the first fetch, as for every design: it doesn't count
            else:
                counted += got
            total += got
        return Rate(counted, last - first, total >= target)
    finally:
        await consumer.stop()


def measure_ceiling(workload: Workload) -> Rate:
    """Events/s of raw consumption of the shared topic."""
    assert workload.broker is not None
    settings = Settings(broker=workload.broker.url, partitions=workload.config.partitions)
    return asyncio.run(_drain(settings, workload.topic, len(workload.records), workload.config.run_cap_s))

"""The latency floor under the worker's: a relay through the same broker that does no processing.

Run as `python -m benchmarks.relay` with BEHAVIOR_STREAM_* settings. It reads the input topic
from its start (no consumer group, every partition assigned) with the worker's fetch wait
(`fetch_wait_ms`) and, per fetch, queues one representation-shaped record per user
(`{"user_id", "events_seen"}`, keyed and partitioned like the worker's) to the representations
topic, with the worker's producer settings (acks=all, per-partition batches). It never waits
for an acknowledgement before the next fetch: a floor must not be slower than it needs to be.

Measured by the same probe as the worker (benchmarks/e2e.py) at the same offered loads, its
latency is what the broker, its fetch wait and the Kafka clients cost on this machine before
any work is done: the part of the worker's end-to-end figures that no worker design removes.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BATCH_LIMITS, issue_batched
from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.logs import configure_logging
from behavior_stream.stream.runtime.settings import Settings, load_settings

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64  # fetches whose sends are not yet acknowledged, at most


async def relay(settings: Settings, stop: asyncio.Event) -> int:
    """Relay until `stop`; returns the records relayed."""
    await ensure_topics(settings, [settings.input_topic, settings.representations_topic])
    opts = client_options(settings)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_wait_ms,
        **opts,
    )
    producer = AIOKafkaProducer(acks="all", linger_ms=0, **BATCH_LIMITS, **opts)
    await consumer.start()
    await producer.start()
    relayed = 0
    try:
        out_topic = settings.representations_topic
        parts = sorted(await producer.partitions_for(settings.input_topic))
        consumer.assign([TopicPartition(settings.input_topic, p) for p in parts])
        n_out = len(await producer.partitions_for(out_topic))
        seen: dict[bytes, int] = {}
        in_flight: set[asyncio.Future[object]] = set()
        failed: list[BaseException] = []

        def acknowledged(ack: asyncio.Future[object]) -> None:
            in_flight.discard(ack)
            if not ack.cancelled() and ack.exception() is not None:
                failed.append(ack.exception())  # type: ignore[arg-type]

        while not stop.is_set() and not failed:
            fetched = await consumer.getmany(timeout_ms=100, max_records=settings.max_batch)
            latest: dict[bytes, int] = {}
            for records in fetched.values():
                for rec in records:
                    if rec.key is None:
                        continue
                    latest[rec.key] = seen[rec.key] = seen.get(rec.key, 0) + 1
                    relayed += 1
            if not latest:
                continue
            out = [
                (out_topic, partition_for(key, n_out), key, _representation(key, n))
                for key, n in latest.items()
            ]
            ack = await issue_batched(producer, out)
            in_flight.add(ack)
            ack.add_done_callback(acknowledged)
            if len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        if in_flight:
            await asyncio.gather(*in_flight)
        if failed:
            raise failed[0]  # a send the broker refused: no figure may come from a broken relay
    finally:
        await consumer.stop()
        await producer.stop()
    return relayed


def _representation(key: bytes, events_seen: int) -> bytes:
    """What the probe reads of a worker's representation: the user and how many events it saw."""
    return orjson.dumps({"user_id": key.decode("utf-8"), "events_seen": events_seen})


def main() -> None:
    """Relay with the environment's settings until SIGTERM or SIGINT."""
    settings = load_settings()
    configure_logging(settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        n = await relay(settings, stop)
        log.info("relay stopped after %d records", n)

    asyncio.run(run())


if __name__ == "__main__":
    main()

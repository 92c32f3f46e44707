"""Follow a whole topic outside any consumer group: its backlog at once, then each new batch.

The control plane reads its control and stats topics this way, so every worker sees every
record of them whatever partitions the group gives it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

Handler = Callable[[list[ConsumerRecord[bytes, bytes]], bool], Awaitable[None]]


class TopicFollower:
    """Every partition of one topic, from the beginning, outside any consumer group.

    `handle(records, True)` gets the backlog (everything up to the end offsets seen at start)
    at once, then `handle(records, False)` each new batch; `caught_up` is set in between. Tansu
    may report an end offset that lags: a record it missed comes with the first live batch.
    """

    def __init__(self, options: dict[str, Any], topic: str, handle: Handler) -> None:
        self.topic, self.handle, self.options = topic, handle, options
        self._consumer: AIOKafkaConsumer | None = None  # made in start(): aiokafka needs the running loop
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition, seek to the beginning, start reading in the background."""
        self._consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **self.options
        )
        await self.consumer.start()
        parts: set[int] = set()
        for _ in range(50):  # a topic created a moment ago may not be in the metadata yet
            parts = self.consumer.partitions_for_topic(self.topic) or set()
            if parts:
                break
            await self.consumer.topics()  # refreshes the metadata
            await asyncio.sleep(0.1)
        if not parts:
            raise RuntimeError(f"topic {self.topic} not found")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        ends = await self.consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(tps, ends), name=f"follow-{self.topic}")

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The consumer (only after start())."""
        assert self._consumer is not None, "TopicFollower.start() first"
        return self._consumer

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> None:
        backlog: list[ConsumerRecord[bytes, bytes]] = []
        while not all([await self.consumer.position(tp) >= ends[tp] for tp in tps]):
            batch = await self.consumer.getmany(timeout_ms=500)
            for tp in sorted(batch):
                backlog.extend(batch[tp])
        await self._handle(backlog, True)
        self.caught_up.set()
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:  # the broker away for a while: keep following once it is back
                log.warning("reading %s failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(1.0)
                continue
            for tp in sorted(batch):
                await self._handle(batch[tp], False)

    async def _handle(self, records: list[ConsumerRecord[bytes, bytes]], backlog: bool) -> None:
        try:
            await self.handle(records, backlog)
        except Exception:  # a failing handler must not stop the follower
            log.exception("handling %d records of %s failed", len(records), self.topic)

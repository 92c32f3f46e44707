"""The control plane: commands every worker applies, and the A/B figures of every worker.

Both topics are read outside the consumer group: each worker assigns itself every partition of
the control and stats topics (no group, no committed offsets) and reads them from the
beginning, so every worker sees every record. The control topic is compacted and keyed by what
a command decides (`reload:A`, `reload:B`, `promote`), so the latest record of each key is the
serving state: a starting worker folds the backlog (latest per key, in offset order) and
applies the result before it processes its first event, then applies new commands as they
come, each id once. The stats topic holds each worker's latest `VariantStats`, keyed by worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from behavior_stream.stream.core.experiment import VARIANTS, Variant, VariantStats
from behavior_stream.stream.runtime.follower import TopicFollower
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings

log = logging.getLogger(__name__)
CommandName = Literal["reload", "promote"]
READY_TIMEOUT_S = 30.0  # a worker waits this long for the control backlog, then serves anyway


@dataclass(frozen=True)
class Command:
    """One control command. `path` only for reload (None: the variant's configured checkpoint)."""

    id: str
    command: CommandName
    variant: Variant = "A"
    path: str | None = None

    @property
    def key(self) -> bytes:
        """What the command decides: its record key, so compaction keeps the latest decision."""
        return b"promote" if self.command == "promote" else f"reload:{self.variant}".encode()

    def encode(self) -> bytes:
        """The record value."""
        body: dict[str, Any] = {"id": self.id, "command": self.command, "variant": self.variant}
        if self.path is not None:
            body["path"] = self.path
        return orjson.dumps(body)


def new_command(command: CommandName, variant: Variant = "A", path: str | None = None) -> Command:
    """A command with a fresh id (what the API sends)."""
    return Command(uuid.uuid4().hex, command, variant, path)


def parse_command(value: bytes, timestamp_ms: int = 0) -> Command:
    """A record value -> Command; raises ValueError on a malformed one.

    Without an `id`, the id is derived from the content and the record's timestamp: a
    redelivered or retried record keeps its id, while the same command sent again later is a
    new command (a reload of an overwritten file must not be skipped as "already applied").
    """
    body = orjson.loads(value)
    if not isinstance(body, dict):
        raise ValueError("a command is a JSON object")
    command, variant, path = body.get("command"), body.get("variant", "A"), body.get("path")
    if command not in ("reload", "promote"):
        raise ValueError(f"unknown command {command!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if path is not None and not isinstance(path, str):
        raise ValueError("path must be a string")
    cmd_id = body.get("id")
    if not isinstance(cmd_id, str) or not cmd_id:
        content = orjson.dumps({k: v for k, v in body.items() if k != "id"}, option=orjson.OPT_SORT_KEYS)
        cmd_id = hashlib.blake2b(content + b"@%d" % timestamp_ms, digest_size=12).hexdigest()
    return Command(cmd_id, command, variant, path)


def fold(commands: list[Command]) -> list[Command]:
    """The serving state of a command log: the latest command of each key, reloads before the
    promotion (promoting B needs B's model in place)."""
    latest: dict[bytes, Command] = {}
    for cmd in commands:
        latest[cmd.key] = cmd
    return sorted(latest.values(), key=lambda c: c.command == "promote")


Apply = Callable[[Command], Awaitable[None]]


class ControlPlane:
    """A worker's side of the control and stats topics: apply commands, publish and collect stats."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = f"{settings.web_advertised_host or settings.web_host}:{settings.web_port}"
        opts = client_options(settings)
        self.commands = TopicFollower(opts, settings.control_topic, self._on_commands)
        self.stats_reader = TopicFollower(opts, settings.stats_topic, self._on_stats)
        self.options = opts
        self._producer: AIOKafkaProducer | None = None  # made in start(), on the running loop
        self.apply: Apply | None = None
        self.applied: set[str] = set()
        self.applied_event = asyncio.Event()  # set (and cleared) after each command applied
        self.workers: dict[str, tuple[int, dict[str, VariantStats]]] = {}  # worker -> (ts ms, stats)
        self.carried: dict[str, VariantStats] = {}  # this worker's figures before its restart
        self._started = False

    async def start(self, apply: Apply) -> None:
        """Start reading both topics (idempotent); `ready()` tells when the backlog is applied."""
        if self._started:
            return
        self._started = True
        self.apply = apply
        self._producer = AIOKafkaProducer(acks="all", **self.options)
        await self._producer.start()
        await self.commands.start()
        await self.stats_reader.start()

    async def stop(self) -> None:
        """Stop the readers and the producer."""
        if self._started:
            await self.commands.stop()
            await self.stats_reader.stop()
            await self.producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer of commands and stats (only after start())."""
        assert self._producer is not None, "ControlPlane.start() first"
        return self._producer

    async def ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Wait until the control backlog is applied; False (and a warning) on timeout."""
        try:
            await asyncio.wait_for(self.commands.caught_up.wait(), timeout_s)
            return True
        except TimeoutError:
            log.warning(
                "control topic backlog not read within %.0f s; serving the configured models", timeout_s
            )
            return False

    async def send(self, cmd: Command) -> None:
        """Produce a command; returns when the broker acknowledged it."""
        await self.producer.send_and_wait(self.settings.control_topic, cmd.encode(), key=cmd.key)

    async def wait_applied(self, cmd_id: str, timeout_s: float = 10.0) -> bool:
        """Wait until this worker applied the command (it reads its own commands back)."""
        deadline = time.monotonic() + timeout_s
        while cmd_id not in self.applied:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.applied_event.clear()
            try:
                await asyncio.wait_for(self.applied_event.wait(), remaining)
            except TimeoutError:
                return cmd_id in self.applied
        return True

    async def _run(self, cmd: Command) -> None:
        if cmd.id in self.applied:
            return
        assert self.apply is not None  # set by start() before any record is read
        try:
            await self.apply(cmd)
        except Exception:  # a bad command must not stop the control plane
            log.exception("control command %s failed: %s", cmd.id, cmd)
        self.applied.add(cmd.id)
        self.applied_event.set()

    async def _on_commands(self, records: list[ConsumerRecord[bytes, bytes]], backlog: bool) -> None:
        commands = []
        for rec in records:
            try:
                commands.append(parse_command(rec.value or b"", rec.timestamp))
            except ValueError as exc:
                log.warning("bad control record at offset %d: %s", rec.offset, exc)
        if backlog:  # only the latest decision of each key matters; older ones count as applied
            state = fold(commands)
            self.applied.update(c.id for c in commands if c not in state)
            log.info("control backlog: %d commands, serving state %s", len(commands), state)
            commands = state
        for cmd in commands:
            await self._run(cmd)

    async def _on_stats(self, records: list[ConsumerRecord[bytes, bytes]], backlog: bool) -> None:
        for rec in records:
            try:
                body = orjson.loads(rec.value or b"")
                stats = {v: VariantStats.from_dict(d) for v, d in body["variants"].items()}
                self.workers[body["worker"]] = (int(body["ts"]), stats)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("bad stats record at offset %d: %s", rec.offset, exc)
        if backlog and self.worker_id in self.workers:
            self.carried = self.workers[self.worker_id][1]

    async def publish(self, live: dict[str, VariantStats]) -> None:
        """Publish this worker's figures (those before a restart included); skipped until the
        stats backlog is read, so a restart never overwrites its earlier figures with zeros."""
        if not self.stats_reader.caught_up.is_set():
            return
        own = self.own(live)
        body = {"worker": self.worker_id, "ts": int(time.time() * 1000)}
        value = orjson.dumps({**body, "variants": {v: s.to_dict() for v, s in own.items()}})
        await self.producer.send_and_wait(self.settings.stats_topic, value, key=self.worker_id.encode())

    def own(self, live: dict[str, VariantStats]) -> dict[str, VariantStats]:
        """This worker's figures: the live counts plus those carried over a restart."""
        return {
            v: self.carried.get(v, VariantStats()) + live.get(v, VariantStats())
            for v in {*live, *self.carried}
        }

    def group(self, live: dict[str, VariantStats]) -> dict[str, dict[str, VariantStats]]:
        """Every worker's latest figures by worker id, this worker's own from its live counts."""
        return {**{w: stats for w, (_, stats) in self.workers.items()}, self.worker_id: self.own(live)}

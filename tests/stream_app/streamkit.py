"""Helpers for stream tests: run worker subprocesses, read topics, scrape metrics (no mocks)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.kafka import client_options
from stream_app.settings import Settings


def stream_settings(broker: EmbeddedBroker, tmp_path: Path, checkpoint: Path, **extra: Any) -> Settings:
    """Settings with a unique app id and topic names, so tests never share state on the broker."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        broker=broker.url,
        app_id=f"bs-{tag}",
        input_topic=f"events-{tag}",
        repartition_topic=f"events-by-user-{tag}",
        representations_topic=f"reps-{tag}",
        recommendations_topic=f"recs-{tag}",
        dlq_topic=f"dlq-{tag}",
        control_topic=f"control-{tag}",
        checkpoint=checkpoint,
        data_dir=tmp_path / "faust",
        web_port=free_port(),
        partitions=4,
        **extra,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as BEHAVIOR_STREAM_* environment variables."""
    env = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, tuple | list):
            value = orjson.dumps(list(value)).decode()
        env[f"BEHAVIOR_STREAM_{name.upper()}"] = str(value)
    return env


@dataclass
class WorkerProcess:
    """A `behavior-stream worker` subprocess."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app.worker"],
            env=env,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def get(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics into {'name{labels}': value}."""
        status, body = self.get("/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_until(lambda: self._healthy(), timeout, f"worker not healthy; log: {self.log_path}")

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"worker exited; see {self.log_path}"
        try:
            return self.get("/health")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(check: Callable[[], bool], timeout: float, message: str, interval: float = 0.5) -> None:
    """Poll `check` until true or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s: {message}")


def read_topic(settings: Settings, topic: str, idle_s: float = 3.0, max_s: float = 120.0) -> list[Any]:
    """Every record of a topic (all partitions), read until none arrive for `idle_s`.

    Reading to an idle gap rather than to the reported end offset: Tansu's end offset can lag
    behind the last record batch.
    """

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings))
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: list[Any] = []
            start = last = time.monotonic()
            while time.monotonic() - last < idle_s and time.monotonic() - start < max_s:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for msgs in batch.values():
                    records.extend(msgs)
                    last = time.monotonic()
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())

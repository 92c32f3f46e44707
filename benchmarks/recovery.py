"""Recovery time of a worker over a changelog of 100k and 1M users: memory and RocksDB stores,
cold (no local data) and warm (local data of a previous run present).

The state is written straight to the changelog topic, as the Committer writes it (encoded user
states with the batch API, then one fence per partition alone in its batch), rather than
replaying millions of events: the states are real ones, produced by the processing core from
the workload's events (`encode_state`, mean ~470 B), repeated under new user keys.

A restart is timed from the worker's process start to the first event it applies: a probe
event is sent every poll, and Faust applies input only after recovery finished, so that moment
is "recovered and serving" (to within a poll, ~0.3 s). The users held then are read from /health. A run
that is not ready within its cap is stopped and reported with the users it had reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
from collections.abc import Sequence

import orjson

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.commit.sender import BatchSender
from behavior_stream.stream.commit.watermarks import watermark_key
from behavior_stream.stream.core.process import process_batch
from behavior_stream.stream.core.state import USER_KEY_PREFIX, user_key
from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.promtext import total
from behavior_stream.testing.replay import replay_events
from behavior_stream.testing.workerproc import WorkerProcess
from benchmarks.config import SCALE_RUN
from benchmarks.report import Figures
from benchmarks.worker_runs import core_context, input_records
from benchmarks.workload import Workload, relabel

log = logging.getLogger(__name__)

CHUNK = 20_000


def state_pool(workload: Workload, n_events: int = 20_000) -> list[bytes]:
    """Encoded user states from the processing core over the workload's first events."""
    ctx = core_context(workload, SCALE_RUN)
    records = input_records(workload, workload.records[:n_events])
    for i in range(0, len(records), workload.config.max_batch):
        process_batch(records[i : i + workload.config.max_batch], ctx)
    return [v for k, v in ctx.store.items() if k.startswith(USER_KEY_PREFIX)]


async def write_changelog(settings: Settings, users: int, pool: Sequence[bytes]) -> int:
    """`users` states on the worker's changelog, then a fence per partition; returns bytes written."""
    topic = f"{settings.app_id}-user-state-changelog"
    await ensure_topics(settings, [topic])
    sender = BatchSender(**client_options(settings))
    await sender.start()
    written = 0
    try:
        for start in range(0, users, CHUNK):
            records = []
            for i in range(start, min(users, start + CHUNK)):
                uid = f"r{i}"
                value = pool[i % len(pool)]
                records.append(
                    (topic, partition_for(uid.encode(), settings.partitions), user_key(uid), value)
                )
                written += len(value)
            await sender.send(records)
        mark = orjson.dumps({})
        for p in range(settings.partitions):
            await sender.send_one(topic, p, watermark_key(p), mark)
    finally:
        await sender.stop()
    return written


def _applied(worker: WorkerProcess) -> float:
    """Events applied so far; 0 while the web server is not up yet."""
    try:
        return total(worker.metrics(), "behavior_stream_events_total")
    except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
        return 0.0


def _users(worker: WorkerProcess) -> int:
    """Users held now (/health counts them live; only asked at the end: on the memory store a
    count walks every key, which would slow the recovery being timed)."""
    try:
        status, body = worker.get("/health")
        return int(orjson.loads(body)["users"]) if status == 200 else -1
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return -1


def timed_start(workload: Workload, settings: Settings, name: str, cap_s: float, tag: str) -> Figures:
    """Start a worker and send it a probe event every poll; seconds until it applied one (or the cap)."""
    worker = WorkerProcess(settings, workload.log_path(f"recovery-{name}")).start()
    started = time.monotonic()
    probes = 0
    try:
        while time.monotonic() - started < cap_s:
            if not worker.alive():
                raise RuntimeError(f"worker exited; see {worker.log_path}")
            # A probe per poll, not one before the start: Faust can drop input it fetched while
            # recovery was still running (the README's gap-repair text), and with no later record
            # in that partition nothing would read it back.
            asyncio.run(replay_events(settings, relabel(workload.events[:1], f"probe-{tag}-{probes}")))
            probes += 1
            if _applied(worker) >= 1:
                seconds = time.monotonic() - started
                users = _users(worker)
                log.warning("recovery %s: ready after %.1fs with %d users", name, seconds, users)
                return {f"recovery.{name}.s": round(seconds, 2), f"recovery.{name}.users": users}
            time.sleep(0.25)
        users = _users(worker)
        log.warning("recovery %s: not ready after the %.0fs cap (%d users held)", name, cap_s, users)
        return {
            f"recovery.{name}.s": None,
            f"recovery.{name}.capped_s": cap_s,
            f"recovery.{name}.users": users,
        }
    finally:
        stop_at = time.monotonic()
        worker.stop(timeout=120.0)  # a clean stop: the RocksDB store flushes and closes
        log.warning("recovery %s: stopped in %.1fs", name, time.monotonic() - stop_at)


def measure_recovery(workload: Workload, sizes: Sequence[int] | None = None) -> Figures:
    """Cold and warm recovery seconds per store and state size (see the module docstring)."""
    cfg = workload.config
    sizes = sizes or ((2_000, 20_000) if cfg.quick_mode else (100_000, 1_000_000))
    pool = state_pool(workload)
    out: Figures = {"recovery.state_bytes_mean": round(sum(map(len, pool)) / len(pool), 1)}
    for users in sizes:
        label = f"{users // 1000}k" if users < 1_000_000 else f"{users // 1_000_000}m"
        cap = max(60.0, users / 1_000_000 * 300.0)  # 1M on the memory store may take minutes
        base = workload.settings(
            f"recovery-{label}", SCALE_RUN, input_topic=f"recovery-in-{label}-{workload.tag}"
        )
        asyncio.run(ensure_topics(base))
        t0 = time.monotonic()
        written = asyncio.run(write_changelog(base, users, pool))
        out[f"recovery.{label}.changelog_mb"] = round(written / 2**20, 1)
        out[f"recovery.{label}.write_s"] = round(time.monotonic() - t0, 1)
        # Faust creates the data dir but not its parents.
        rocks = base.model_copy(
            update={"store": "rocksdb", "data_dir": base.data_dir.with_suffix(".rocksdb")}
        )
        memory = base.model_copy(update={"data_dir": base.data_dir.with_suffix(".memory")})
        runs = [
            ("memory_cold", memory),
            ("memory_warm", memory),  # the memory store has no local data: a restart is a cold start
            ("rocksdb_cold", rocks),
            ("rocksdb_warm", rocks),
        ]
        for i, (kind, settings) in enumerate(runs):
            out.update(timed_start(workload, settings, f"{label}.{kind}", cap, f"{label}-{i}"))
    return out

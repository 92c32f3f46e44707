"""Memory: encoded state bytes per user (GRU and LSTM, hidden 64) and worker RSS growth per 100k users."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from behavior_stream.nn.config import Cell
from behavior_stream.stream.core.process import MAX_EXCLUDED, process_batch
from behavior_stream.stream.core.state import max_state_bytes
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.testing.workerproc import WorkerProcess
from benchmarks.child import rss_bytes
from benchmarks.config import RunSpec
from benchmarks.worker_runs import core_context, input_records, wait_applied, warm_up
from benchmarks.workload import Record, Workload, drop_topics, keyed_records, produce

log = logging.getLogger(__name__)

STATE_EVENTS = 20_000  # enough events that most of their users have full history windows


@dataclass(frozen=True)
class StateSize:
    """Encoded `UserState` sizes over the users of a core run."""

    cell: Cell
    hidden: int
    users: int
    mean: float
    p99: float
    max: int
    bound: int  # `max_state_bytes` of this model and the core's caps: no value may exceed it

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line."""
        tag = f"state.{self.cell}"
        return {
            f"{tag}.hidden": self.hidden,
            f"{tag}.users": self.users,
            f"{tag}.bytes_mean": round(self.mean, 1),
            f"{tag}.bytes_p99": self.p99,
            f"{tag}.bytes_max": self.max,
            f"{tag}.bytes_bound": self.bound,
        }


def state_size(workload: Workload, cell: Cell) -> StateSize:
    """Run the core (exact scoring: retrieval does not change the state) and measure stored values."""
    spec = RunSpec(cell, "small", False)
    ctx = core_context(workload, spec)
    records = input_records(workload, workload.records[:STATE_EVENTS])
    for i in range(0, len(records), workload.config.max_batch):
        process_batch(records[i : i + workload.config.max_batch], ctx)
    sizes = np.array([len(v) for v in ctx.store.values()])
    config = ctx.engine.config
    floats = config.hidden_size * config.num_layers * (2 if config.cell == "lstm" else 1)
    wide = ctx.engine.vocab.n_inputs >= 1 << 24  # history indices then take 4 bytes, not 3
    bound = max_state_bytes(floats, config.repeat_window, ctx.recent_ids, MAX_EXCLUDED, wide)
    mean, p99 = float(sizes.mean()), float(np.percentile(sizes, 99))
    return StateSize(cell, config.hidden_size, len(sizes), mean, p99, int(sizes.max()), bound)


@dataclass(frozen=True)
class RssGrowth:
    """Worker RSS before and after taking on many new users."""

    users: int
    before: int
    after: int

    @property
    def per_100k_users(self) -> float:
        """Bytes of RSS per 100,000 users."""
        return (self.after - self.before) / max(self.users, 1) * 100_000

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line (MiB)."""
        mib = 1024 * 1024
        return {
            "rss.users": self.users,
            "rss.before_mib": round(self.before / mib, 1),
            "rss.after_mib": round(self.after / mib, 1),
            "rss.per_100k_users_mib": round(self.per_100k_users / mib, 1),
        }


def users_of(worker: WorkerProcess) -> int:
    """Users in the worker's state, from /health."""
    return int(worker.json("/health")["users"])


def many_users(workload: Workload, n: int) -> list[Record]:
    """`n` generated events, each given to a user of its own: `n` new users for the worker."""
    events = workload.events
    return keyed_records([dataclasses.replace(events[i % len(events)], user_id=f"m{i}") for i in range(n)])


def rss_growth(workload: Workload) -> RssGrowth:
    """RSS of a GRU worker before and after `memory_users` new users (scaled to 100k in the figures)."""
    cfg = workload.config
    records = many_users(workload, cfg.memory_users)
    spec = RunSpec("gru", "small", False)
    name = "rss"
    topic = f"in-{name}-{workload.tag}"
    settings = workload.settings(name, spec, input_topic=topic)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, workload.log_path(f"worker-{name}")).start()
    try:
        worker.wait_ready(cfg.start_cap_s)
        sent = warm_up(workload, [worker], topic)  # first batches allocate model buffers: not per-user memory
        assert worker.proc is not None
        users0, before = users_of(worker), rss_bytes(worker.proc.pid)
        asyncio.run(produce(settings, topic, records))
        wait_applied([worker], sent + len(records), 6 * cfg.run_cap_s)
        return RssGrowth(users_of(worker) - users0, before, rss_bytes(worker.proc.pid))
    finally:
        worker.stop()
        drop_topics(workload, f"{name}-{workload.tag}")

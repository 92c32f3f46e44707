"""behavior-stream itself: the worker end to end, the processing core alone, and scale-out.

The worker runs as `python -m behavior_stream.stream.runtime.worker` (`WorkerProcess`) and is timed from its
`behavior_stream_events_total` counter. The core alone is `process_batch` over the same records
in batches of `max_batch` with a dict store, configured from the same settings as the worker
(`stream_context`: scenario records, fresh slots, feed policy) and with the worker's torch and
faiss thread counts: the difference is what the runtime (Faust, producing, the changelog) costs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
import urllib.error
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import torch

from behavior_stream.stream.commit.partitioning import partition_for
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.runtime.app import stream_context
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.promtext import total
from behavior_stream.testing.workerproc import WorkerProcess, wait_until
from benchmarks.child import cpu_seconds, pid_with_argument
from benchmarks.config import RunSpec
from benchmarks.rates import Rate, Sample, watch
from benchmarks.workload import Record, Workload, cycled, drop_topics, keyed_records, produce, relabel

log = logging.getLogger(__name__)

EVENTS_METRIC = "behavior_stream_events_total"
# The worker's torch/faiss threads (the `torch_threads` setting), so the core-alone runs match it.
WORKER_THREADS = Settings().torch_threads


def applied(worker: WorkerProcess) -> int | None:
    """Events the worker has applied, None while it cannot answer."""
    try:
        return int(total(worker.metrics(), EVENTS_METRIC))
    except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError, OSError):
        return None


def sampler(workers: Sequence[WorkerProcess], baseline: int = 0) -> Sample | None:
    """(events applied by all workers since `baseline`, now), None while one cannot answer."""
    counts = [applied(w) for w in workers]
    if any(c is None for c in counts):
        return None
    return sum(c for c in counts if c is not None) - baseline, time.time()


class CpuWindow:
    """CPU seconds of some processes between the first and the last sample that saw events."""

    def __init__(self, pids: Sequence[int | None]) -> None:
        self.pids = pids
        self.first: list[float] | None = None
        self.last: list[float] | None = None

    def observe(self, got: Sample | None) -> Sample | None:
        """Pass a sample through, reading the processes' CPU times when it has events."""
        if got is not None and got[0] > 0:
            now = [cpu_seconds(p) if p is not None else math.nan for p in self.pids]
            if self.first is None:
                self.first = now
            self.last = now
        return got

    def seconds(self) -> list[float]:
        """CPU seconds of each process over the window."""
        if self.first is None or self.last is None:
            return [math.nan] * len(self.pids)
        return [b - a for a, b in zip(self.first, self.last, strict=True)]


@dataclass(frozen=True)
class WorkerRun:
    """A worker's rate and the CPU the worker and the broker spent per event meanwhile."""

    rate: Rate
    worker_cpu_s: float
    broker_cpu_s: float

    def figures(self, prefix: str) -> dict[str, float | bool]:
        """The rate's figures plus `<prefix>.worker_cpu_us` / `.broker_cpu_us` per event."""
        n = max(self.rate.events, 1)
        return {
            **self.rate.figures(prefix),
            f"{prefix}.worker_cpu_us": round(self.worker_cpu_s / n * 1e6, 1),
            f"{prefix}.broker_cpu_us": round(self.broker_cpu_s / n * 1e6, 1),
        }


def broker_pid(workload: Workload) -> int | None:
    """The broker's process id (found by its listener URL)."""
    assert workload.broker is not None
    return pid_with_argument(f"tcp://{workload.broker.bootstrap}")


def measure_worker(workload: Workload, spec: RunSpec) -> WorkerRun:
    """Events/s of one worker over the pre-loaded topic (validate, step, score, state, outputs)."""
    cfg = workload.config
    name = spec.name(cfg)
    settings = workload.settings(name, spec)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings, workload.log_path(f"worker-{name}")).start()
    assert worker.proc is not None
    cpu = CpuWindow([worker.proc.pid, broker_pid(workload)])
    try:
        rate = watch(
            lambda: cpu.observe(sampler([worker])),
            len(workload.records),
            cfg.run_cap_s,
            cfg.start_cap_s,
            worker.alive,
        )
        return WorkerRun(rate, *cpu.seconds())
    finally:
        worker.stop()
        drop_topics(workload, f"{name}-{workload.tag}")


@dataclass
class CoreRun:
    """The core alone over the workload: its rate and where the time went."""

    rate: Rate
    step_seconds: float = 0.0
    score_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time meanwhile (every thread)


def partitioned(topic: str, partitions: int, records: Sequence[Record]) -> list[InputRecord]:
    """The records as a worker would consume them from `topic`: partitioned by key, offsets per
    partition."""
    offsets = [0] * partitions
    out = []
    now = time.time()
    for key, value in records:
        p = partition_for(key, partitions)
        out.append(InputRecord(topic, p, offsets[p], key, value, now))
        offsets[p] += 1
    return out


def input_records(workload: Workload, records: Sequence[Record]) -> list[InputRecord]:
    """`partitioned` on the workload's topic and partition count."""
    return partitioned(workload.topic, workload.config.partitions, records)


def engine_context(engine: ModelEngine, topic: str, max_batch: int) -> StreamContext:
    """The worker's stream context (its settings' processing options) for `engine` reading
    `topic`, over a plain dict store.

    Built by the worker's own `stream_context`: with the core's bare defaults instead (no
    scenario records, no fresh slots) the core alone did a third less work per event than the
    worker, and the ratio charged that work to the runtime.
    """
    settings = Settings(
        input_topic=topic,
        repartition_topic="by-user",
        representations_topic="reps",
        recommendations_topic="recs",
        dlq_topic="dlq",
        max_batch=max_batch,
    )
    return stream_context(settings, engine, {})


def core_context(workload: Workload, spec: RunSpec) -> StreamContext:
    """`engine_context` of the run's engine on the workload's topic and batch size."""
    return engine_context(workload.engine(spec), workload.topic, workload.config.max_batch)


@contextmanager
def _frozen() -> Iterator[None]:
    """Every object alive now out of the garbage collector's reach meanwhile (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def compute_threads(threads: int) -> Iterator[None]:
    """Torch and faiss (OpenMP: HNSW search) at `threads` threads meanwhile, as the worker sets
    both (worker.py); faiss left at its default would search on every core."""
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(WORKER_THREADS)
        faiss.omp_set_num_threads(WORKER_THREADS)


def measure_core(workload: Workload, spec: RunSpec, threads: int = WORKER_THREADS) -> CoreRun:
    """`process_batch` over the workload's records in batches of `max_batch`, no broker.

    Stops after `core_cap_s`: the rate is steady well before, and the budget is tight.
    The long-lived objects (the workload's events, the model) are frozen out of the garbage
    collector's reach meanwhile, as the worker freezes its own after start-up (worker.py):
    else each full collection walks the 200k events this process holds and a worker does not.
    """
    ctx = core_context(workload, spec)
    records = input_records(workload, workload.records)
    size = workload.config.max_batch
    run = CoreRun(Rate(0, 0.0, False))
    with compute_threads(threads), _frozen():
        start, cpu_start = time.perf_counter(), time.process_time()
        done = 0
        while done < len(records) and time.perf_counter() - start < workload.config.core_cap_s:
            stats = process_batch(records[done : done + size], ctx).stats
            run.step_seconds += stats.step_seconds
            run.score_seconds += stats.score_seconds
            done += stats.records
        run.rate = Rate(done, time.perf_counter() - start, done == len(records))
        run.cpu_seconds = time.process_time() - cpu_start
    return run


def wait_applied(workers: Sequence[WorkerProcess], count: int, timeout: float) -> None:
    """Block until the workers together have applied `count` events."""

    def done() -> bool:
        got = sampler(workers)
        return got is not None and got[0] >= count

    wait_until(done, timeout, f"{count} events not applied; see {workers[0].log_path}")


def warm_up(workload: Workload, workers: Sequence[WorkerProcess], topic: str, rounds: int = 10) -> int:
    """Send small rounds of fresh events until every worker has applied some; returns the events sent.

    Once each worker applied events, each owns partitions: the group is stable, so the timed
    part measures the workers, not a rebalance.
    """
    sent = 0
    for lap in range(rounds):
        batch = keyed_records(relabel(workload.events[:500], f"warm{len(workers)}.{lap}"))
        asyncio.run(produce(workers[0].settings, topic, batch))
        sent += len(batch)
        wait_applied(workers, sent, workload.config.start_cap_s)
        if all((applied(w) or 0) > 0 for w in workers):
            return sent
    raise TimeoutError(f"after {rounds} warm-up rounds some of {len(workers)} workers own no partition")


def measure_scale(workload: Workload, spec: RunSpec, n_workers: int) -> Rate:
    """Events/s of `n_workers` workers in one consumer group on a fresh topic, once all own partitions."""
    cfg = workload.config
    name = f"scale{n_workers}-{spec.name(cfg)}"
    topic = f"in-{name}-{workload.tag}"
    workers = []
    for i in range(n_workers):
        settings = workload.settings(
            name, spec, input_topic=topic, data_dir=cfg.workdir / "faust" / f"{name}-{i}"
        )
        workers.append(WorkerProcess(settings, workload.log_path(f"worker-{name}-{i}")))
    asyncio.run(ensure_topics(workers[0].settings))
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready(cfg.start_cap_s)
        warm = warm_up(workload, workers, topic)
        laps = cfg.scale_laps * len(workload.events)
        records = keyed_records(cycled(workload.events, laps, f"scale{n_workers}"))
        asyncio.run(produce(workers[0].settings, topic, records))
        return watch(
            lambda: sampler(workers, warm),
            len(records),
            cfg.run_cap_s,
            cfg.start_cap_s,
            lambda: all(w.alive() for w in workers),
        )
    finally:
        for w in workers:
            w.stop()
        drop_topics(workload, f"{name}-{workload.tag}")

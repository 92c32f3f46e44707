"""Faust baselines, each in its own process: a trivial counting agent and the naive per-event design.

`take` and `iterate` only count events (micro-batches with `take_events`, or one event at a
time): what Faust itself costs. `naive` is the design the worker avoids: `group_by(user)` (a
repartition through Kafka), then per event a table read, an unbatched model step (batch of 1)
and a table write (one changelog record per event). All use the worker's Faust settings.

Run as `python -m benchmarks.faust_baselines` with BEHAVIOR_STREAM_* settings and BENCH_* variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import faust
import orjson
import torch
from faust.worker import Worker

from behavior_stream.schema.events import Invalid, parse_event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.state import decode_state, encode_state
from behavior_stream.stream.runtime.app import faust_options
from behavior_stream.stream.runtime.logs import configure_logging
from behavior_stream.stream.runtime.settings import Settings, load_settings
from benchmarks.child import Child, child_env
from benchmarks.config import NO_SCORING
from benchmarks.rates import ProgressFile, Rate, read_progress, watch
from benchmarks.workload import Workload, drop_topics

Mode = Literal["take", "iterate", "naive"]
MODE_ENV, PROGRESS_ENV, TARGET_ENV = "BENCH_MODE", "BENCH_PROGRESS", "BENCH_TARGET"


def faust_app(settings: Settings) -> faust.App:
    """A Faust app with the worker's consumer, commit and serializer options and Faust's own
    memory store (the baselines are plain Faust)."""
    return faust.App(settings.app_id, **faust_options(settings), store="memory://", web_enabled=False)


def register_trivial(app: faust.App, settings: Settings, progress: ProgressFile, mode: Mode) -> None:
    """A counting agent, by micro-batch (`take`) or by event (`iterate`)."""
    topic = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)

    @app.agent(topic, name="count")
    async def count(stream: Any) -> None:
        if mode == "take":
            async for events in stream.take_events(settings.max_batch, within=settings.batch_ms / 1000):
                progress.add(len(events))
        else:
            async for _ in stream:
                progress.add()


def _user_of(value: bytes) -> bytes:
    return str(orjson.loads(value)["user_id"]).encode("utf-8")


def register_naive(app: faust.App, settings: Settings, progress: ProgressFile) -> None:
    """group_by(user), then per event: table read, model step with a batch of one, table write."""
    assert settings.checkpoint is not None, "the naive design needs a checkpoint"
    # A batch of one gains nothing from a second thread and, on a shared machine, loses several
    # times its cost to thread hand-offs: one thread is the naive design at its best.
    torch.set_num_threads(1)
    engine = ModelEngine.from_checkpoint(settings.checkpoint, settings.ann_threshold)
    topic = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)
    table = app.Table(
        "naive-state", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None
    )

    @app.agent(topic, name="naive")
    async def naive(stream: Any) -> None:
        async for value in stream.group_by(_user_of, name="by-user"):
            ev = parse_event(value)
            if isinstance(ev, Invalid):
                continue
            key = ev.user_id.encode("utf-8")
            raw = table.get(key)
            st = decode_state(raw) if raw is not None else engine.fresh_state()
            previous_ts, st.last_ts = st.last_ts, ev.ts
            st.events_seen += 1
            engine.step_users([st], [[ev]], [previous_ts])
            table[key] = encode_state(st)
            progress.add()


def main() -> None:
    """Child entry point: build the app for BENCH_MODE and run it until SIGTERM."""
    settings = load_settings()
    configure_logging(settings.log_level)
    mode = next((m for m in get_args(Mode) if m == os.environ[MODE_ENV]), None)
    if mode is None:
        raise SystemExit(f"{MODE_ENV}={os.environ[MODE_ENV]!r} is not one of {get_args(Mode)}")
    progress = ProgressFile(Path(os.environ[PROGRESS_ENV]), int(os.environ[TARGET_ENV]))
    app = faust_app(settings)
    if mode == "naive":
        register_naive(app, settings, progress)
    else:
        register_trivial(app, settings, progress, mode)
    # As the worker: our logging as configured above, not Faust's own handler and levels.
    worker = Worker(
        app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.execute_from_commandline()


def measure_faust(workload: Workload, mode: Mode) -> Rate:
    """Events/s of one Faust baseline over the shared topic (the naive one over a capped window)."""
    cfg = workload.config
    settings = workload.settings(f"faust-{mode}", NO_SCORING)
    progress = cfg.workdir / "progress" / f"{settings.app_id}.json"
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.unlink(missing_ok=True)
    extra = {MODE_ENV: mode, PROGRESS_ENV: str(progress), TARGET_ENV: str(len(workload.records))}
    # The counting agents are the denominator of a target ratio: same window as the worker.
    cap = cfg.slow_cap_s if mode == "naive" else cfg.run_cap_s
    try:
        with Child(
            "benchmarks.faust_baselines", child_env(settings, extra), workload.log_path(settings.app_id)
        ) as child:
            return watch(
                lambda: read_progress(progress), len(workload.records), cap, cfg.start_cap_s, child.alive
            )
    finally:
        drop_topics(workload, settings.app_id)


if __name__ == "__main__":
    main()

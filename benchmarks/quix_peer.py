"""The Quix Streams peers, in their own process, in one of two modes (`BENCH_QUIX_MODE`):

- `state` (no model): per event, validate, update the user's state, emit. It keeps the worker's
  per-user state (the same `UserState` codec bytes, hidden size 64) in Quix's RocksDB state
  store, read-modify-written once per event, and produces one representation-sized output per
  event: another framework's cost of consuming, keeping state and producing.
- `whole` (the whole job per event, no micro-batching): per event, the processing core itself
  (`process_batch` on a batch of one record, the worker's model and catalog: validation,
  admission, one model step, one top-K scoring) over the user's state in Quix's store, and both
  output records. Against the worker it measures what micro-batching is worth.

Run as `python -m benchmarks.quix_peer` with BEHAVIOR_STREAM_* settings and BENCH_* variables
(needs the `bench` extra: `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import orjson

from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import TYPE_INDEX, Invalid, parse_event
from behavior_stream.schema.vocab import stable_hash
from behavior_stream.stream.core.state import UserState, decode_state, encode_state
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.logs import configure_logging
from behavior_stream.stream.runtime.settings import load_settings
from benchmarks.child import Child, child_env
from benchmarks.config import NO_SCORING, PRIMARY
from benchmarks.rates import ProgressFile, Rate, read_progress, watch
from benchmarks.workload import Workload, drop_topics

PROGRESS_ENV, TARGET_ENV, OUTPUT_ENV, STATE_DIR_ENV, MODE_ENV = (
    "BENCH_PROGRESS",
    "BENCH_TARGET",
    "BENCH_OUTPUT",
    "BENCH_STATE",
    "BENCH_QUIX_MODE",
)
QuixMode = Literal["state", "whole"]


class QuixUserState(MutableMapping[bytes, bytes]):
    """The core's store for one message: the user's encoded state in Quix's state store (the
    core reads and writes only the current user's key)."""

    def __init__(self) -> None:
        self.state: Any = None  # Quix's state of the current message's key

    def __getitem__(self, key: bytes) -> bytes:
        value = self.state.get(key.decode("utf-8"))
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.state.set(key.decode("utf-8"), value)

    def __delitem__(self, key: bytes) -> None:
        self.state.delete(key.decode("utf-8"))

    def __iter__(self) -> Iterator[bytes]:
        return iter(())  # never iterated by the core

    def __len__(self) -> int:
        return 0


def fresh_state(config: ModelConfig) -> UserState:
    """An empty state of the same size as the worker's (GRU, one layer)."""
    return UserState(
        history=np.full(config.repeat_window, -1, np.int32),
        history_types=np.zeros(config.repeat_window, np.uint8),
        hidden=np.zeros(config.hidden_size, np.float32),
    )


def _dumps(value: Any) -> bytes:
    # State values are already encoded; only Quix's own keys need JSON.
    return value if isinstance(value, bytes) else orjson.dumps(value)


def main() -> None:
    """Child entry point: run the Quix application until SIGTERM."""
    from quixstreams import Application
    from quixstreams.state.rocksdb import RocksDBOptions

    settings = load_settings()
    configure_logging(settings.log_level)
    progress = ProgressFile(Path(os.environ[PROGRESS_ENV]), int(os.environ[TARGET_ENV]))
    config = ModelConfig()
    app = Application(
        broker_address=settings.bootstrap_servers,
        consumer_group=settings.app_id,
        auto_offset_reset="earliest",
        commit_interval=settings.commit_interval_s,
        state_dir=os.environ[STATE_DIR_ENV],
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=bytes),
        # The worker's session timeout: Tansu holds a JoinGroup for half of it (librdkafka's default: 45 s).
        consumer_extra_config={
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(min(3.0, settings.session_timeout_s / 3) * 1000),
        },
        loglevel="WARNING",
    )
    source = app.topic(settings.input_topic, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(os.environ[OUTPUT_ENV], value_serializer="bytes", key_serializer="bytes")

    def update(value: bytes, state: Any) -> bytes | None:
        ev = parse_event(value)
        if isinstance(ev, Invalid):
            return None
        raw = state.get("s")
        st = decode_state(raw) if raw is not None else fresh_state(config)
        st.events_seen += 1
        st.last_ts = ev.ts
        st.session_counts[TYPE_INDEX[ev.type]] += 1
        st.history = np.roll(st.history, -1)
        st.history[-1] = stable_hash(ev.item_id) % 1_000_000 if ev.item_id else -1
        state.set("s", encode_state(st))
        progress.add()
        out = {"user_id": ev.user_id, "ts": ev.ts, "events_seen": st.events_seen, "vector": st.hidden}
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    mode = cast(QuixMode, os.environ.get(MODE_ENV, "state"))
    if mode == "whole":
        sdf = app.dataframe(source).apply(
            _whole_job(settings, progress), stateful=True, metadata=True, expand=True
        )
    else:
        sdf = app.dataframe(source).apply(update, stateful=True).filter(lambda v: v is not None)
    sdf.to_topic(sink)
    app.run()


def _whole_job(settings: Any, progress: ProgressFile) -> Any:
    """The per-event callback of the `whole` mode: the core on one record, both outputs out."""
    import faiss
    import torch
    from quixstreams import message_context

    from behavior_stream.stream.core.engine import ModelEngine
    from behavior_stream.stream.core.process import process_batch
    from behavior_stream.stream.core.records import InputRecord
    from behavior_stream.stream.runtime.app import stream_context

    # As the worker (worker.py): its thread counts and its context, so the job per event is its own.
    torch.set_num_threads(settings.torch_threads)
    faiss.omp_set_num_threads(settings.torch_threads)
    engine = ModelEngine.from_checkpoint(settings.checkpoint, settings.ann_threshold)
    store = QuixUserState()
    ctx = stream_context(settings, engine, store)

    def job(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> list[bytes]:
        store.state = state
        mc = message_context()
        record = InputRecord(mc.topic, mc.partition, mc.offset, key, value, time.time())
        result = process_batch([record], ctx)
        progress.add()
        return [m.value for m in result.messages]

    return job


def measure_quix(workload: Workload, mode: QuixMode = "state") -> Rate:
    """Events/s of a Quix peer over the shared topic, over a capped window."""
    cfg = workload.config
    # The whole job runs the worker's primary model (HNSW over the large catalog).
    settings = workload.settings(f"quix-{mode}", PRIMARY if mode == "whole" else NO_SCORING)
    progress = cfg.workdir / "progress" / f"{settings.app_id}.json"
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.unlink(missing_ok=True)
    output = settings.representations_topic
    asyncio.run(ensure_topics(settings, [output]))
    extra = {
        PROGRESS_ENV: str(progress),
        TARGET_ENV: str(len(workload.records)),
        OUTPUT_ENV: output,
        STATE_DIR_ENV: str(cfg.workdir / "quix-state" / settings.app_id),
        MODE_ENV: mode,
    }
    try:
        with Child(
            "benchmarks.quix_peer", child_env(settings, extra), workload.log_path(settings.app_id)
        ) as child:
            return watch(
                lambda: read_progress(progress),
                len(workload.records),
                cfg.slow_cap_s,
                cfg.start_cap_s,
                child.alive,
            )
    finally:
        drop_topics(workload, settings.app_id)
        drop_topics(workload, output)


if __name__ == "__main__":
    main()

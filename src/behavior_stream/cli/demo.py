"""`behavior-stream demo`: the whole system on one machine, from nothing, in a few minutes.

Starts the embedded broker, makes (or loads) a dataset, trains a model on its earlier part (or
reuses a cached checkpoint), starts a worker, replays the later part through Kafka with a few
bad and re-sent records mixed in, shows live progress, and prints a summary next to the
offline evaluation of the same model. Everything it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

from behavior_stream.cli.demo_report import DemoReport, print_summary
from behavior_stream.cli.errors import InputError
from behavior_stream.data.loaders import Format, load_events
from behavior_stream.data.splits import eval_sequences
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.nn.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from behavior_stream.nn.config import Cell, ModelConfig
from behavior_stream.schema.events import Event
from behavior_stream.simulate.generator import (
    DEFAULT_EVENTS,
    DEFAULT_ITEMS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    catalog_path_for,
    generate,
    read_catalog,
)
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import load_settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.replay import Producer
from behavior_stream.testing.workerproc import WorkerProcess
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import rank_metrics, train_model

log = logging.getLogger(__name__)

BAD_EXAMPLES = (
    b'{"user_id": "u1", "type": "teleport", "item_id": "i1", "ts": 1767571200000}',
    b'{"user_id": "u1", "type": "click", "ts": 1767571200000}',
    b"not json at all",
    b'{"user_id": "u1", "type": "click", "item_id": "i1", "ts": -3}',
)


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs on."""

    workdir: Path = Path("runs/demo")
    data: Path | None = None
    fmt: Format = "jsonl"
    cell: Cell = "gru"
    train_frac: float = 0.8
    epochs: int = 4
    bad_records: int = 200
    resent: int = 200
    keep_running: bool = False
    web_port: int = 6066


def dataset(opts: DemoOptions) -> tuple[list[Event], dict[str, str], Path, dict[str, str]]:
    """The demo's events in time order, item -> display name, the data file, item -> category."""
    if opts.data is not None:
        loaded = load_events(opts.data, opts.fmt)  # logs its own summary of the rows read
        if len(loaded.events) < 10:
            raise InputError(str(opts.data), f"too few valid events for a demo ({loaded.report.summary()})")
        names = {i: f"category {c}" for i, c in loaded.categories.items()}
        return loaded.events, names, opts.data, loaded.categories
    path = (
        opts.workdir / f"events-{DEFAULT_USERS}u-{DEFAULT_ITEMS}i-{DEFAULT_EVENTS}e-s{DEFAULT_SEED}.jsonl.gz"
    )
    if not path.exists():
        log.info("generating %d synthetic events -> %s", DEFAULT_EVENTS, path)
        generate(DEFAULT_USERS, DEFAULT_ITEMS, DEFAULT_EVENTS, DEFAULT_SEED, path)
    loaded = load_events(path, "jsonl")  # the categories come from the catalog sidecar
    names = {}
    for row in read_catalog(catalog_path_for(path)):
        names[str(row["item_id"])] = f"{row.get('name', row['item_id'])} ({row.get('category', '?')})"
    return loaded.events, names, path, loaded.categories


def trained_model(
    opts: DemoOptions, history: list[Event], data_path: Path, categories: dict[str, str]
) -> tuple[Path, float]:
    """A checkpoint trained on `history`, cached by data and settings; returns (path, train seconds)."""
    config = ModelConfig(cell=opts.cell)
    # The settings are in the key: a checkpoint cached by an older version is not reused.
    key = hashlib.sha256(
        f"{data_path.resolve()}|{len(history)}|{config}|{opts.epochs}|{len(categories)}".encode()
    ).hexdigest()
    path = opts.workdir / f"model-{opts.cell}-{key[:10]}.pt"
    if path.exists():
        log.info("reusing cached checkpoint %s", path)
        return path, 0.0
    started = time.perf_counter()
    result = train_model(
        history,
        config,
        TrainConfig(epochs=opts.epochs, threads=2, test_frac=0.0, progress=True),
        categories=categories or None,
    )
    save_checkpoint(path, result.model, result.vocab, result.metadata, result.categories)
    return path, time.perf_counter() - started


def offline_metrics(loaded: LoadedModel, history: list[Event], later: list[Event]) -> dict[str, float]:
    """Recall@20 / MRR@20 of the same model on the replayed part, offline."""
    return rank_metrics(ModelScorer(loaded), eval_sequences(history, later), 20)


def mixed_records(events: list[Event], opts: DemoOptions, seed: int = 0) -> list[tuple[bytes | None, bytes]]:
    """The replay: every event keyed by user, plus bad records and producer-style re-sends."""
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(len(events)), min(opts.bad_records, len(events))))
    dup_at = set(rng.sample(range(len(events)), min(opts.resent, len(events))))
    out: list[tuple[bytes | None, bytes]] = []
    for i, ev in enumerate(events):
        key = ev.user_id.encode()
        out.append((key, ev.to_json()))
        if i in dup_at:
            out.append((key, ev.to_json()))
        if i in bad_at:
            out.append((key, BAD_EXAMPLES[i % len(BAD_EXAMPLES)]))
    return out


def run_demo(opts: DemoOptions) -> DemoReport:
    """Run the demo end to end; returns what the summary shows."""
    # The environment's settings are checked before minutes of data and training, not after.
    load_settings()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    events, names, data_path, categories = dataset(opts)
    cut = events[int(len(events) * opts.train_frac)].ts
    history = [e for e in events if e.ts < cut]
    later = [e for e in events if e.ts >= cut]
    checkpoint, train_seconds = trained_model(opts, history, data_path, categories)
    loaded = load_checkpoint(checkpoint)
    offline = offline_metrics(loaded, history, later)
    broker = EmbeddedBroker(port=free_port(), log_path=opts.workdir / "broker.log").start()
    worker: WorkerProcess | None = None
    try:
        settings = load_settings(
            broker=broker.url,
            checkpoint=checkpoint,
            web_port=opts.web_port if opts.web_port else free_port(),
            data_dir=opts.workdir / "faust",
            app_id=f"behavior-stream-demo-{int(time.time())}",
            online_eval_model=True,
        )
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(settings, opts.workdir / "worker.log").start()
        worker.wait_ready()
        records = mixed_records(later, opts)
        report = DemoReport(
            events=len(later),
            records=len(records),
            train_events=len(history),
            train_seconds=train_seconds,
            model_version=loaded.model_version,
            offline=offline,
            web=worker.url,
            names=names,
        )

        async def produce() -> None:
            async with Producer(settings) as producer:
                await producer.send_keyed(settings.input_topic, records)

        produced = time.perf_counter()
        asyncio.run(produce())
        report.watch(worker, expected=len(later), since=produced)
        report.feeds = [worker.json(f"/users/{u}/recommendations") for u in report.sample_users(later)]
        print_summary(report)
        if opts.keep_running:
            log.info("worker and broker keep running (Ctrl-C to stop): %s/metrics", worker.url)
            while True:
                time.sleep(3600)
        return report
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()

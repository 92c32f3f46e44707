"""The shared workload: generated events, untrained checkpoints over two catalogs, broker topics.

The checkpoints are untrained models of the production architecture (hidden size 64) over the
generator's catalog, padded with extra item ids to make the large catalog. The model step and
exact scoring cost the same whatever the weights learned; an HNSW search does not: over random
vectors it costs about twice what it does over a trained model's (`benchmarks/hnsw_width.py`),
so the HNSW rows here are the index's worst case.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from aiokafka.admin import AIOKafkaAdminClient

from behavior_stream.nn.checkpoint import save_checkpoint
from behavior_stream.nn.config import Cell, ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.simulate.generator import generate
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.replay import Producer
from benchmarks.config import BenchConfig, Catalog, RunSpec

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]  # (user key, event JSON)


def make_checkpoint(path: Path, items: Sequence[str], cell: Cell, seed: int) -> Path:
    """An untrained model over `items` with the current default architecture (rebuilt every run)."""
    torch.manual_seed(seed)
    vocab = ItemVocab(tuple(items), n_oov_buckets=1024)
    model = SequenceModel(ModelConfig(cell=cell), vocab.n_items, vocab.n_inputs)
    save_checkpoint(path, model, vocab, {"seed": seed, "note": "untrained benchmark model"})
    return path


def relabel(events: Sequence[Event], tag: str) -> list[Event]:
    """The same events for new users (`<user>~<tag>`): fresh state, so nothing is a duplicate."""
    return [dataclasses.replace(e, user_id=f"{e.user_id}~{tag}") for e in events]


def cycled(events: Sequence[Event], n: int, tag: str) -> list[Event]:
    """`n` events: the log relabelled once per pass, so a long load never repeats a user's event."""
    out: list[Event] = []
    for lap in range((n + len(events) - 1) // len(events)):
        out.extend(relabel(events[: n - len(out)], f"{tag}.{lap}"))
    return out


def keyed_records(events: Sequence[Event]) -> list[Record]:
    """Kafka (key, value) pairs keyed by user."""
    return [(e.user_id.encode("utf-8"), e.to_json()) for e in events]


@dataclass
class Workload:
    """Events, checkpoints and (when started) the broker with the pre-loaded input topic."""

    config: BenchConfig
    events: list[Event]
    records: list[Record]
    checkpoints: dict[tuple[Cell, Catalog], Path]
    broker: EmbeddedBroker | None = None
    topic: str = "bench-events"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    _engines: dict[RunSpec, ModelEngine] = field(default_factory=dict, repr=False)

    def checkpoint(self, spec: RunSpec) -> Path:
        """The checkpoint of a run's cell and catalog."""
        return self.checkpoints[(spec.cell, spec.catalog)]

    def engine(self, spec: RunSpec) -> ModelEngine:
        """The run's model engine, built once (an HNSW build over a large catalog takes many seconds)."""
        if spec not in self._engines:
            ann = self.config.ann_threshold if spec.approximate else 0
            self._engines[spec] = ModelEngine.from_checkpoint(self.checkpoint(spec), ann)
        return self._engines[spec]

    def settings(self, name: str, spec: RunSpec, input_topic: str | None = None, **extra: object) -> Settings:
        """Worker settings with their own consumer group and output topics (input: the shared topic)."""
        assert self.broker is not None, "the broker is not started"
        cfg = self.config
        run = f"{name}-{self.tag}"
        (cfg.workdir / "faust").mkdir(parents=True, exist_ok=True)
        values: dict[str, object] = {
            "broker": self.broker.url,
            "app_id": f"bench-{run}",
            "partitions": cfg.partitions,
            "input_topic": input_topic or self.topic,
            "repartition_topic": f"by-user-{run}",
            "representations_topic": f"reps-{run}",
            "recommendations_topic": f"recs-{run}",
            "dlq_topic": f"dlq-{run}",
            "control_topic": f"control-{run}",
            "checkpoint": self.checkpoint(spec),
            "ann_threshold": cfg.ann_threshold if spec.approximate else 0,
            "max_batch": cfg.max_batch,
            "web_port": free_port(),
            "data_dir": cfg.workdir / "faust" / run,
            **extra,
        }
        return Settings(**values)  # type: ignore[arg-type]

    def log_path(self, name: str) -> Path:
        """Where a subprocess of this run logs."""
        return self.config.workdir / "logs" / f"{name}.log"


SCRATCH_DIRS = ("faust", "quix-state", "progress", "logs")  # per-run files under the workdir


def build_workload(config: BenchConfig) -> Workload:
    """Clear the previous run's scratch files, generate the events, write the checkpoints; no broker yet."""
    for name in SCRATCH_DIRS:
        shutil.rmtree(config.workdir / name, ignore_errors=True)
    data = generate(config.users, config.items, config.events, config.seed)
    catalog = sorted(data.item_categories)
    width = len(str(config.large_catalog))
    large = [*catalog, *(f"x{i:0{width}d}" for i in range(config.large_catalog - len(catalog)))]
    ckpt_dir = config.workdir / "checkpoints"
    checkpoints: dict[tuple[Cell, Catalog], Path] = {}
    # The runs' models, plus small-catalog ones of both cells for the state-size phase.
    extra: set[tuple[Cell, Catalog]] = {("gru", "small"), ("lstm", "small")}
    wanted = {(s.cell, s.catalog) for s in config.runs} | extra
    for cell, size in sorted(wanted):
        items = catalog if size == "small" else large
        path = ckpt_dir / f"{cell}-{len(items)}-s{config.seed}.pt"
        checkpoints[(cell, size)] = make_checkpoint(path, items, cell, config.seed)
    log.info(
        "workload: %d events of %d users, catalogs of %d and %d items",
        len(data.events),
        data.stats.users,
        len(catalog),
        len(large),
    )
    return Workload(config, data.events, keyed_records(data.events), checkpoints)


async def produce(settings: Settings, topic: str, records: Sequence[Record], chunk: int = 20_000) -> None:
    """Send records as fast as the broker takes them (creating the topic if needed)."""
    await ensure_topics(settings, [topic])
    async with Producer(settings) as producer:
        for i in range(0, len(records), chunk):
            await producer.send_keyed(topic, records[i : i + chunk])


def start_broker(workload: Workload) -> None:
    """Start the embedded broker and pre-load the shared input topic."""
    workload.broker = EmbeddedBroker(log_path=workload.config.workdir / "logs" / "tansu.log")
    workload.config.workdir.joinpath("logs").mkdir(parents=True, exist_ok=True)
    workload.broker.start()
    settings = Settings(broker=workload.broker.url, partitions=workload.config.partitions)
    asyncio.run(produce(settings, workload.topic, workload.records))


def drop_topics(workload: Workload, contains: str) -> None:
    """Delete every topic whose name contains `contains` (Tansu keeps all data in memory)."""
    assert workload.broker is not None
    settings = Settings(broker=workload.broker.url)

    async def run() -> None:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if contains in t]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    try:
        asyncio.run(run())
    except Exception:  # cleanup only frees memory; a failure must not lose the figures
        log.exception("could not delete topics containing %r", contains)

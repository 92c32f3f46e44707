"""Helpers for stream tests: unique settings per test and reading whole topics (no mocks)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from aiokafka import AIOKafkaConsumer, TopicPartition

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.checkpoint import save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.rules import fit_rules
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.runtime.kafka import client_options
from behavior_stream.stream.runtime.settings import Settings
from behavior_stream.testing.broker import EmbeddedBroker, free_port
from behavior_stream.testing.workerproc import WorkerProcess, wait_until

__all__ = [
    "WorkerProcess",
    "latest_representations",
    "make_checkpoint",
    "read_topic",
    "stream_settings",
    "wait_until",
]


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


def latest_representations(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each user's representation message with the most events seen (re-sent outputs after a
    restart repeat earlier counts, so "latest" is by events_seen, not by position)."""
    last: dict[str, dict[str, Any]] = {}
    for rec in read_topic(settings, settings.representations_topic, idle_s=2.0):
        rep = orjson.loads(rec.value)
        if rep["events_seen"] >= last.get(rep["user_id"], {}).get("events_seen", -1):
            last[rep["user_id"]] = rep
    return last


def make_checkpoint(
    path: Path,
    items: list[str],
    seed: int,
    cell: str = "gru",
    categories: dict[str, str] | None = None,
    cosine_scale: float = 0.0,
    rules_weight: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """An untrained model over `items` (random weights from `seed`): enough for stream mechanics.
    `metadata` joins the checkpoint's (e.g. a cart table).
    With `categories` (item -> category) the model reads them and scores with category output vectors;
    with `cosine_scale`, by scaled cosine similarity; with `rules_weight`, sequential rules fitted
    on random sequences over the items are added."""
    torch.manual_seed(seed)
    vocab = ItemVocab(tuple(items), n_oov_buckets=64)
    config = ModelConfig(
        cell=cell,  # type: ignore[arg-type]
        hidden_size=32,
        item_dim=32,
        repeat_window=8,
        cosine_scale=cosine_scale,
        rules_weight=rules_weight,
    )
    cats = CategoryVocab.build(categories, items) if categories else None
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs, cats, vocab.items)
    if model.category_out is not None:
        # An untrained projection is near zero; make the category term matter, as training does.
        torch.nn.init.normal_(model.category_out.weight, std=0.5)
    if rules_weight > 0:
        rng = np.random.default_rng(seed)
        walks = [rng.integers(0, vocab.n_items, 12) for _ in range(4 * vocab.n_items)]
        model.set_rules(*fit_rules(walks, vocab.n_items, config.rules_window, config.rules_neighbours))
    meta = {"seed": seed, "note": "untrained test model", **(metadata or {})}
    save_checkpoint(path, model, vocab, meta, categories)
    return path

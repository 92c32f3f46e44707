"""The worker's agents and timers; each is thin: take records, call one function, done."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import Variant
from behavior_stream.stream.runtime.control import Command
from behavior_stream.stream.runtime.runtime import Runtime

log = logging.getLogger(__name__)


async def reload_model(rt: Runtime, path: Path, variant: Variant = "A") -> bool:
    """Load a checkpoint off the event loop and swap it in between batches; False if unchanged."""
    current = rt.ctx.engines().get(variant)
    engine = await asyncio.to_thread(
        ModelEngine.from_checkpoint, path, rt.settings.ann_threshold, current or rt.ctx.engine
    )
    if current is not None and engine.version == current.version:
        return False
    async with rt.lock:
        other = rt.ctx.treatment if variant == "A" else rt.ctx.engine
        if other is not None:
            engine.share_vocabularies(other)
        if variant == "A":
            rt.ctx.engine = engine
        else:
            rt.ctx.treatment = engine
    log.info("model %s reloaded: %s -> %s", variant, current.version if current else None, engine.version)
    rt.metrics.set_models({v: e.version for v, e in rt.ctx.engines().items()})
    rt.metrics.model_reloads.inc()
    return True


async def run_command(rt: Runtime, cmd: Command) -> None:
    """A control command (read from the control topic by every worker, stream/runtime/control.py):
    reload a variant's checkpoint (a no-op if that version is served), or promote a variant."""
    variant = cmd.variant
    if cmd.command == "reload":
        path = cmd.path or (rt.settings.checkpoint if variant == "A" else rt.settings.ab_checkpoint)
        if path is None:
            raise ValueError("reload needs a path (no checkpoint configured for that variant)")
        if variant == "B" and rt.ctx.treatment is None:
            raise ValueError("no treatment model (ab_checkpoint) is being served")
        await reload_model(rt, Path(path), variant)
    else:
        await rt.promote(variant)


def register(rt: Runtime) -> None:
    """Attach agents and timers to the runtime's app."""
    app, settings = rt.app, rt.settings
    events_topic = app.topic(
        settings.input_topic, settings.repartition_topic, key_type=bytes, value_type=bytes
    )

    # Subscribed through the Conductor as an agent's topic would be (so the group, its assignment
    # and the table's co-partitioning are Faust's), but its records reach `process_events` as
    # whole fetches through the consumer's hook (batch_delivery.py), not through a Stream.
    app.topics.add(events_topic)

    @app.task
    async def process_events() -> None:
        """The batch loop (Runtime.run_batches) over the input topics."""
        await rt.committer.start()
        # The serving decision (reloads, promotion) folded from the control topic comes first, so
        # a restarted or new worker never serves its first event from a stale model or split.
        await rt.control.ready()
        await rt.run_batches()

    @app.task
    async def control() -> None:
        """Commands reach every worker: a group-less reader of the whole control topic."""
        await rt.control.start(lambda cmd: run_command(rt, cmd))

    @app.timer(settings.stats_interval_s)
    async def publish_stats() -> None:
        """This worker's A/B figures, for `/experiments` on every worker."""
        await rt.control.publish({v: c.stats() for v, c in rt.metrics.counts.items()})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sender(app: Any, **kwargs: Any) -> None:
        try:  # a clean stop keeps the whole trending window, not just the last timer's
            await rt.persist_trending()
        except Exception:  # a heuristic must not hold up the shutdown
            log.exception("trending windows not persisted at shutdown")
        await rt.committer.stop()
        await rt.gap_reader.stop()
        await rt.control.stop()

    from behavior_stream.nn.checkpoint import ChecksumError, sidecar_path  # the watcher's only use

    watched: dict[Variant, Path | None] = {"A": settings.checkpoint, "B": settings.ab_checkpoint}
    # The mtimes of the files the worker loaded: seeding them on the first poll instead would take
    # a version published before that poll for the one already served, and never load it.
    for variant, path in watched.items():
        if path is not None and path.exists():
            rt.reload_mtimes.setdefault(variant, path.stat().st_mtime)
    reload_failures: dict[Variant, str] = {}  # the failure last logged, per variant

    @app.timer(settings.reload_poll_s)
    async def watch_checkpoints() -> None:
        """Load a changed checkpoint as soon as it verifies against its sidecar; until then keep the
        current model and retry every poll (the sidecar may still be on its way), logging each
        distinct failure once."""
        for variant, path in watched.items():
            if path is None or not path.exists() or variant not in rt.ctx.engines():
                continue
            mtime = path.stat().st_mtime
            if mtime == rt.reload_mtimes.setdefault(variant, mtime):
                continue
            try:
                # Without a sidecar a file being copied in cannot be told from a complete one.
                if not sidecar_path(path).exists():
                    raise ChecksumError(f"{path}: no {sidecar_path(path).name} yet")
                await reload_model(rt, path, variant)
            except Exception as exc:  # a half-written, unverified or bad checkpoint keeps the model
                reason = f"{type(exc).__name__}: {exc}"
                if reload_failures.get(variant) != reason:
                    reload_failures[variant] = reason
                    log.warning("hot reload of %s failed, keeping the current model: %s", path, reason)
                continue
            # Recorded only once loaded (the mtime from before the load: a file replaced during it
            # is loaded again), so a failed version is retried, not forgotten.
            rt.reload_mtimes[variant] = mtime
            reload_failures.pop(variant, None)

    input_topics = (settings.input_topic, settings.repartition_topic)

    @rt.table.on_recover
    async def restore_trending() -> None:
        """After every table recovery (start, rebalance): the assigned partitions' windows."""
        rt.restore_trending({tp.partition for tp in app.consumer.assignment() if tp.topic in input_topics})
        rt.metrics.users.set(rt.count_users())  # the one scan of the store, after its recovery

    @app.timer(settings.trending_persist_s)
    async def persist_trending() -> None:
        """Trending is a heuristic: a timer, not every batch, writes it (a crash loses the last seconds)."""
        try:
            await rt.persist_trending()
        except Exception:  # retried by the next tick; the stream must not stop for it
            log.exception("trending windows not persisted")

    if settings.state_ttl_s is not None:
        ttl_ms = int(settings.state_ttl_s * 1000)

        @app.timer(min(30.0, max(1.0, settings.state_ttl_s / 10)))
        async def evict_inactive() -> None:
            await rt.evict_inactive(ttl_ms)

    @app.timer(2.0)
    async def gauges() -> None:
        """Users in state and consumer lag; no scan of the store, no call to the consumer thread
        (a tick must never hold a batch up)."""
        rt.metrics.users.set(rt.user_count())
        consumer = app.consumer
        processed = rt.feed.committable  # next offset to process, per input partition
        rt.metrics.lag.clear()  # partitions lost in a rebalance must not keep their last value
        for tp in consumer.assignment():
            if tp.topic not in input_topics:
                continue
            high, position = consumer.highwater(tp), processed.get(tp)
            if high is not None and position is not None:
                rt.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))

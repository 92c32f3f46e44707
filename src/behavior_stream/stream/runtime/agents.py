"""The worker's agents and timers; each is thin: take records, call one function, done."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.experiment import VARIANTS, Variant
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


async def run_command(rt: Runtime, cmd: dict[str, Any]) -> None:
    """A control command: reload a variant's checkpoint, or promote a variant to every user."""
    variant = cmd.get("variant", "A")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    if cmd.get("command") == "reload":
        path = cmd.get("path") or (rt.settings.checkpoint if variant == "A" else rt.settings.ab_checkpoint)
        if path is None:
            raise ValueError("reload needs a path (no checkpoint configured for that variant)")
        await reload_model(rt, Path(path), variant)
    elif cmd.get("command") == "promote":
        await rt.promote(variant)
    else:
        raise ValueError(f"unknown command {cmd.get('command')!r}")


def register(rt: Runtime) -> None:
    """Attach agents and timers to the runtime's app."""
    app, settings = rt.app, rt.settings
    events_topic = app.topic(
        settings.input_topic, settings.repartition_topic, key_type=bytes, value_type=bytes
    )
    control_topic = app.topic(settings.control_topic, key_type=bytes, value_type=bytes)

    @app.agent(events_topic, name="process-events")
    async def process_events(stream: Any) -> None:
        await rt.committer.start()
        async for events in stream.take_events(settings.max_batch, within=settings.batch_ms / 1000):
            await rt.handle(events)

    @app.agent(control_topic, name="control")
    async def control(stream: Any) -> None:
        """Commands: {"command": "reload"|"promote", "variant": "A"|"B", "path": optional}."""
        async for value in stream:
            try:
                await run_command(rt, orjson.loads(value))
            except Exception:  # a bad command must not stop the control agent
                log.exception("control command failed: %r", value[:200])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sender(app: Any, **kwargs: Any) -> None:
        await rt.committer.stop()
        await rt.gap_reader.stop()

    watched: dict[Variant, Path | None] = {"A": settings.checkpoint, "B": settings.ab_checkpoint}

    @app.timer(settings.reload_poll_s)
    async def watch_checkpoints() -> None:
        for variant, path in watched.items():
            if path is None or not path.exists() or variant not in rt.ctx.engines():
                continue
            mtime = path.stat().st_mtime
            seen = rt.reload_mtimes.setdefault(variant, mtime)
            if mtime == seen:
                continue
            rt.reload_mtimes[variant] = mtime
            try:
                await reload_model(rt, path, variant)
            except Exception:  # a half-written or bad checkpoint keeps the current model
                log.exception("hot reload of %s failed; keeping the current model", path)

    if settings.state_ttl_s is not None:
        ttl_ms = int(settings.state_ttl_s * 1000)

        @app.timer(min(30.0, max(1.0, settings.state_ttl_s / 10)))
        async def evict_inactive() -> None:
            await rt.evict_inactive(ttl_ms)

    @app.timer(2.0)
    async def gauges() -> None:
        """Users in state (also after recovery, before any new event) and consumer lag."""
        rt.metrics.users.set(rt.store.user_count())
        consumer = app.consumer
        rt.metrics.lag.clear()  # partitions lost in a rebalance must not keep their last value
        for tp in consumer.assignment():
            if tp.topic not in (settings.input_topic, settings.repartition_topic):
                continue
            position = await consumer.position(tp)
            high = consumer.highwater(tp)
            if position is not None and high is not None:
                rt.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))

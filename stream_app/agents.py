"""The worker's agents and timers; each is thin: take records, call one function, done."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream_app.engine import ModelEngine

if TYPE_CHECKING:
    from stream_app.app import Runtime

log = logging.getLogger(__name__)


async def reload_model(rt: Runtime, path: Path) -> bool:
    """Load a checkpoint off the event loop and swap it in between batches; False if unchanged."""
    engine = await asyncio.to_thread(
        ModelEngine.from_checkpoint, path, rt.settings.ann_threshold, rt.ctx.engine
    )
    if engine.version == rt.ctx.engine.version:
        return False
    log.warning("model reloaded: %s -> %s", rt.ctx.engine.version, engine.version)
    rt.ctx.engine = engine
    rt.metrics.set_model(engine.version)
    rt.metrics.model_reloads.inc()
    return True


def register(rt: Runtime) -> None:
    """Attach agents and timers to the runtime's app."""
    app, settings = rt.app, rt.settings
    events_topic = app.topic(
        settings.input_topic, settings.repartition_topic, key_type=bytes, value_type=bytes
    )
    control_topic = app.topic(settings.control_topic, key_type=bytes, value_type=bytes)

    @app.agent(events_topic, name="process-events")
    async def process_events(stream: Any) -> None:
        await rt.sender.start()
        async for events in stream.take_events(settings.max_batch, within=settings.batch_ms / 1000):
            await rt.handle(events)

    @app.agent(control_topic, name="control")
    async def control(stream: Any) -> None:
        """Commands: {"command": "reload", "path": optional checkpoint path}."""
        async for value in stream:
            try:
                cmd = orjson.loads(value)
                path = cmd.get("path") or settings.checkpoint
                if cmd.get("command") == "reload" and path:
                    await reload_model(rt, Path(path))
                else:
                    log.warning("unknown control command %r", cmd)
            except Exception:  # a bad command must not stop the control agent
                log.exception("control command failed: %r", value[:200])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_sender(app: Any, **kwargs: Any) -> None:
        await rt.sender.stop()

    @app.timer(settings.reload_poll_s)
    async def watch_checkpoint() -> None:
        path = settings.checkpoint
        if path is None or not path.exists():
            return
        mtime = path.stat().st_mtime
        if rt.reload_mtime == 0.0:
            rt.reload_mtime = mtime
        elif mtime != rt.reload_mtime:
            rt.reload_mtime = mtime
            try:
                await reload_model(rt, path)
            except Exception:  # a half-written or bad checkpoint keeps the current model
                log.exception("hot reload of %s failed; keeping %s", path, rt.ctx.engine.version)

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

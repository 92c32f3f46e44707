"""Run a worker process: load the model, check the broker, create topics, build the app, run Faust.

The model and the broker are checked before Faust starts: Faust retries an unreachable broker
forever, so a worker given a wrong address would hang silently instead of saying so.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.settings import Settings

# Not __name__: run with `python -m` this module is `__main__`, outside the behavior_stream loggers.
log = logging.getLogger("behavior_stream.stream.runtime.worker")


BROKER_WAIT_S = 10.0  # long enough for a broker started alongside (compose), short enough to say so


class _Drop(logging.Filter):
    """Drops every record: aiokafka logs an ERROR per failed connect, 20 lines for one fact."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


async def wait_for_broker(settings: Settings, timeout_s: float = BROKER_WAIT_S) -> None:
    """Return once a broker answers a metadata request; `ConnectionError` naming it after `timeout_s`.

    A plain client bootstrap (with the settings' TLS/SASL), retried until the deadline: one try
    fails at once while a broker is still starting. One warning when the first try fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    quiet, aiokafka_log = _Drop(), logging.getLogger("aiokafka")
    aiokafka_log.addFilter(quiet)
    try:
        first = True
        while True:
            client = AIOKafkaClient(**client_options(settings), request_timeout_ms=5000)
            try:
                await asyncio.wait_for(client.bootstrap(), max(0.1, deadline - loop.time()))
                return
            except (KafkaError, OSError, TimeoutError):
                if loop.time() >= deadline:
                    raise ConnectionError(
                        f"broker {settings.broker}: no Kafka broker answered within {timeout_s:.0f}s"
                    ) from None
                if first:
                    log.warning("no broker at %s yet; waiting up to %.0fs", settings.broker, timeout_s)
            finally:
                await client.close()
            first = False
            await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
    finally:
        aiokafka_log.removeFilter(quiet)


def run_worker(settings: Settings, broker_wait_s: float = BROKER_WAIT_S) -> None:
    """Block running a worker with these settings (SIGINT/SIGTERM stop it cleanly).

    Bad input fails before Faust starts, with an exception naming it: no checkpoint configured
    (`ValueError`), a checkpoint missing or not loadable (`FileNotFoundError`, `CheckpointError`),
    no broker answering within `broker_wait_s` (`ConnectionError`).
    """
    # Imported here: `replay` uses `wait_for_broker` and must not pay for torch, faiss and Faust.
    import faiss
    import torch
    from faust.worker import Worker

    from behavior_stream.stream.core.engine import ModelEngine
    from behavior_stream.stream.runtime.app import build_app

    if settings.checkpoint is None:
        raise ValueError("a model checkpoint is required (--checkpoint or BEHAVIOR_STREAM_CHECKPOINT)")
    # The model first: a bad checkpoint is reported without needing a broker. Nothing else runs
    # yet, so the HNSW build (faiss, OpenMP) may take every core: 13.6 s instead of 27 s over the
    # benchmark's 100k items on this 2-core machine.
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    engine = ModelEngine.from_checkpoint(settings.checkpoint, settings.ann_threshold)
    treatment = None
    if settings.ab_checkpoint is not None:
        treatment = ModelEngine.from_checkpoint(settings.ab_checkpoint, settings.ann_threshold, engine)
        log.info("A/B: variant B %s for %.0f%% of users", treatment.version, 100 * settings.ab_split)
    # Then one thread: the worker is one event loop; extra BLAS threads fight it and the broker for
    # cores (hot reloads build their index on this one thread too, beside the running stream).
    torch.set_num_threads(settings.torch_threads)
    faiss.omp_set_num_threads(settings.torch_threads)
    asyncio.run(wait_for_broker(settings, broker_wait_s))
    asyncio.run(ensure_topics(settings))
    log.info(
        "worker %s: model %s, %d items (%s scoring), web on %s:%d",
        settings.app_id,
        engine.version,
        engine.vocab.n_items,
        "HNSW" if engine.index.approximate else "exact",
        settings.web_host,
        settings.web_port,
    )
    rt = build_app(settings, engine, treatment)
    # The model, the catalog index and the app are long-lived: out of the collector's reach, a
    # full collection no longer walks them (a stall of tens of ms in the middle of a batch).
    gc.collect()
    gc.freeze()
    # Logging is configured by the caller (`configure_logging`); override_logging=False keeps Faust
    # from installing a second handler and resetting the levels.
    worker = Worker(
        rt.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.execute_from_commandline()


# `python -m behavior_stream.stream.runtime.worker`: settings from the environment only
if __name__ == "__main__":
    import sys

    from behavior_stream.stream.runtime.logs import configure_logging
    from behavior_stream.stream.runtime.settings import SettingsError, load_settings

    try:
        main_settings = load_settings()
    except SettingsError as exc:
        # As the CLI reports bad input: one line naming the variable, exit 2, no traceback.
        sys.stderr.write(f"worker: error: {exc}\n")
        sys.exit(2)
    configure_logging(main_settings.log_level)
    run_worker(main_settings)

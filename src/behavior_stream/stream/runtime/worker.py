"""Run a worker process: create topics, load the model, build the app, run Faust until stopped."""

from __future__ import annotations

import asyncio
import logging

import faiss
import torch
from faust.worker import Worker

from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.runtime.app import build_app
from behavior_stream.stream.runtime.kafka import ensure_topics
from behavior_stream.stream.runtime.settings import Settings

# Not __name__: run with `python -m` this module is `__main__`, outside the behavior_stream loggers.
log = logging.getLogger("behavior_stream.stream.runtime.worker")


def run_worker(settings: Settings) -> None:
    """Block running a worker with these settings (SIGINT/SIGTERM stop it cleanly)."""
    if settings.checkpoint is None:
        raise SystemExit("a model checkpoint is required (--checkpoint or BEHAVIOR_STREAM_CHECKPOINT)")
    # One thread: the worker is one event loop; extra BLAS threads fight it and the broker for cores.
    torch.set_num_threads(settings.torch_threads)
    faiss.omp_set_num_threads(settings.torch_threads)
    asyncio.run(ensure_topics(settings))
    engine = ModelEngine.from_checkpoint(settings.checkpoint, settings.ann_threshold)
    treatment = None
    if settings.ab_checkpoint is not None:
        treatment = ModelEngine.from_checkpoint(settings.ab_checkpoint, settings.ann_threshold, engine)
        log.info("A/B: variant B %s for %.0f%% of users", treatment.version, 100 * settings.ab_split)
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
    # Logging is configured by the caller (`configure_logging`); override_logging=False keeps Faust
    # from installing a second handler and resetting the levels.
    worker = Worker(
        rt.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False
    )
    worker.execute_from_commandline()


# `python -m behavior_stream.stream.runtime.worker`: settings from the environment only
if __name__ == "__main__":
    from behavior_stream.stream.runtime.logs import configure_logging
    from behavior_stream.stream.runtime.settings import load_settings

    main_settings = load_settings()
    configure_logging(main_settings.log_level)
    run_worker(main_settings)

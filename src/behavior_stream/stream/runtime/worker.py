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

log = logging.getLogger(__name__)


def quiet_logging(level: str) -> None:
    """Set levels, and at warning or above disable lower records globally.

    Faust and aiokafka build many debug/info records on hot paths; `logging.disable` makes
    those calls return at once instead of walking the logger hierarchy per event.
    """
    numeric = getattr(logging, level.upper())
    logging.getLogger().setLevel(numeric)
    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    if numeric >= logging.WARNING:
        logging.disable(logging.INFO)


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
        log.warning("A/B: variant B %s for %.0f%% of users", treatment.version, 100 * settings.ab_split)
    log.warning(
        "worker %s: model %s, %d items (%s scoring), web on %s:%d",
        settings.app_id,
        engine.version,
        engine.vocab.n_items,
        "HNSW" if engine.index.approximate else "exact",
        settings.web_host,
        settings.web_port,
    )
    rt = build_app(settings, engine, treatment)
    # Logging is configured once, by the caller (one handler, so no line is written twice).
    worker = Worker(
        rt.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False
    )
    quiet_logging(settings.log_level)
    worker.execute_from_commandline()


# `python -m behavior_stream.stream.runtime.worker`: settings from the environment only
if __name__ == "__main__":
    from behavior_stream.stream.runtime.settings import load_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(load_settings())

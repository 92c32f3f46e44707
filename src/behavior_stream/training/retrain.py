"""Retraining on recent traffic: the catalog grows with the log instead of staying frozen at training.

`retrain` trains a new model with `train_model` on the recent events (a log file or a topic's
retained events, read by `behavior-stream retrain`) and publishes it with `save_checkpoint` at
the path the workers watch, so they hot-reload it. Every item of the recent events' train and
validation parts is in the new catalog, which is how an item newer than the served model becomes
recommendable by the model (until then feeds show it only as a fresh item, see
stream/core/fresh_items.py).

The new model is trained from scratch, not warm-started: `train_model` builds its own network,
and mapping the old item rows onto a grown catalog would need a hook there. The architecture
(`ModelConfig`) and the item categories are carried over from the current checkpoint, so the
workers serve the same kind of model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from behavior_stream.nn.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import Event
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import train_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain published: versions, data, and how the catalog changed."""

    version: str
    previous_version: str | None
    events: int
    catalog_items: int
    new_items: int  # catalog items the previous model did not know
    dropped_items: int  # items of the previous catalog absent from the recent events
    best_epoch: int
    valid: dict[str, float]
    seconds: float


def recent_events(
    events: list[Event], max_events: int | None = None, since_s: float | None = None
) -> list[Event]:
    """The newest events in event-time order: within `since_s` seconds (event time) of the newest
    one, and at most `max_events` of them."""
    ordered = sorted(events, key=lambda e: e.ts)
    if since_s is not None and ordered:
        cutoff = ordered[-1].ts - int(since_s * 1000)
        ordered = [e for e in ordered if e.ts >= cutoff]
    if max_events is not None:
        ordered = ordered[-max_events:] if max_events > 0 else []
    return ordered


def current_model(path: Path) -> LoadedModel | None:
    """The checkpoint being served at `path`, or None when there is none yet (or it is unreadable)."""
    if not path.exists():
        return None
    try:
        return load_checkpoint(path)
    except (OSError, ValueError, RuntimeError) as exc:  # a bad file must not block a fresh model
        log.warning("current checkpoint %s is unreadable (%s); its settings are not carried over", path, exc)
        return None


def model_config(current: LoadedModel | None, **overrides: Any) -> ModelConfig:
    """The current model's architecture (else the defaults), with explicit overrides (not None)."""
    base = current.config if current is not None else ModelConfig()
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def retrain(
    events: list[Event],
    out: Path,
    config: ModelConfig,
    train_cfg: TrainConfig,
    current: LoadedModel | None = None,
    dataset: dict[str, Any] | None = None,
) -> RetrainOutcome:
    """Train on `events` and publish the checkpoint at `out` (atomically, see `save_checkpoint`)."""
    start = time.perf_counter()
    previous = current.model_version if current is not None else None
    info = {**(dataset or {}), "retrain": {"previous_version": previous, "warm_start": False}}
    log.info("retraining on %d events from scratch (no warm start); previous model %s", len(events), previous)
    result = train_model(
        events,
        config,
        train_cfg,
        categories=current.item_categories if current is not None else None,
        dataset=info,
    )
    version = save_checkpoint(out, result.model, result.vocab, result.metadata, result.categories)
    old = set(current.vocab.items) if current is not None else set()
    new = set(result.vocab.items)
    outcome = RetrainOutcome(
        version=version,
        previous_version=previous,
        events=len(events),
        catalog_items=len(new),
        new_items=len(new - old),
        dropped_items=len(old - new),
        best_epoch=result.best_epoch,
        valid=result.valid,
        seconds=time.perf_counter() - start,
    )
    log.info("published %s at %s: %d items (%d new, %d dropped) in %.1fs", version, out,
             outcome.catalog_items, outcome.new_items, outcome.dropped_items, outcome.seconds)  # fmt: skip
    return outcome

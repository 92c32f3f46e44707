"""Synthetic e-commerce behavior events: the project's default data for the demo, benchmarks and tests.

`generate` builds a catalog (`catalog_sim`), simulates shoppers and their sessions (`population_sim`,
`session_sim`) and returns the events in event-time order, or writes them as JSONL (gzip for `.gz`)
with a catalog sidecar file. The same arguments always give the same events and the same file bytes.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from behavior_stream.schema.events import EVENT_TYPES, MAX_TS_MS, MIN_TS_MS, Event, make_event
from behavior_stream.simulate.catalog import Catalog, build_catalog, default_categories
from behavior_stream.simulate.population import SimEvents, simulate

log = logging.getLogger(__name__)

# Sized so the demo's model trains in well under a minute on two cores.
DEFAULT_USERS = 3_000
DEFAULT_ITEMS = 2_000
DEFAULT_EVENTS = 200_000
DEFAULT_SEED = 7
DEFAULT_START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
SPAN_DAYS = 56  # each user's sessions spread over about eight weeks
_CHUNK = 50_000


@dataclass(frozen=True)
class GenerationStats:
    """Summary counts of a generated data set."""

    events: int
    users: int  # users with at least one event
    items: int  # distinct items in events
    sessions: int
    type_counts: dict[str, int]
    first_ts: int | None
    last_ts: int | None


@dataclass(frozen=True, eq=False)
class GeneratedData:
    """The generated events (empty when written to `path`), the catalog, and summary stats."""

    events: list[Event]
    item_categories: dict[str, str]
    item_names: dict[str, str]
    item_prices: dict[str, float]
    stats: GenerationStats
    path: Path | None = None
    catalog_path: Path | None = None


def catalog_path_for(out: Path) -> Path:
    """The catalog sidecar of an events file: `events.jsonl.gz` -> `events.items.json`."""
    name = out.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}.items.json")


def read_catalog(path: Path) -> list[dict[str, object]]:
    """The rows of a catalog sidecar: item_id, category, name, price, style, popularity."""
    rows = orjson.loads(path.read_bytes())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of catalog items, got {type(rows).__name__}")
    return rows


def generate(
    users: int,
    items: int,
    events: int,
    seed: int,
    out: Path | None = None,
    *,
    categories: int | None = None,
    start_ms: int = DEFAULT_START_MS,
) -> GeneratedData:
    """Simulate `events` events of up to `users` shoppers over a catalog of `items` items.

    Deterministic for given arguments. With `out`, events go to that JSONL file (gzip when it ends
    with `.gz`) and the catalog to `catalog_path_for(out)`; otherwise they are returned in memory.
    """
    if users < 1 or items < 1 or events < 0:
        raise ValueError(f"need users >= 1, items >= 1, events >= 0; got {users=}, {items=}, {events=}")
    span_ms = SPAN_DAYS * 86_400_000
    if not MIN_TS_MS <= start_ms < MAX_TS_MS - span_ms:
        raise ValueError(f"start_ms {start_ms} leaves no room for {SPAN_DAYS} days of valid event times")
    rng = np.random.default_rng(seed)
    catalog = build_catalog(rng, items, categories if categories is not None else default_categories(items))
    sim = simulate(rng, catalog, users, events, start_ms, span_ms)
    if len(sim.ts) and int(sim.ts.max()) >= MAX_TS_MS:
        raise ValueError(
            f"events run past the valid time range; lower start_ms {start_ms} or events {events}"
        )
    order = np.argsort(sim.ts, kind="stable")  # ties keep each user's own order
    item_categories = {
        catalog.item_ids[i]: catalog.categories[c].name for i, c in enumerate(catalog.category_of)
    }
    item_names = dict(zip(catalog.item_ids, catalog.names, strict=True))
    item_prices = dict(zip(catalog.item_ids, np.round(catalog.price, 2).tolist(), strict=True))
    stats = _stats(sim)
    if out is None:
        all_events = [e for chunk in _event_chunks(sim, catalog, order) for e in chunk]
        return GeneratedData(all_events, item_categories, item_names, item_prices, stats)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _open_out(out) as f:
        for chunk in _event_chunks(sim, catalog, order):
            f.write(b"".join(orjson.dumps(e.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for e in chunk))
    sidecar = catalog_path_for(out)
    sidecar.write_bytes(orjson.dumps(catalog.records()))
    log.info("wrote %d events to %s and %d catalog items to %s", len(order), out, catalog.n_items, sidecar)
    return GeneratedData([], item_categories, item_names, item_prices, stats, out, sidecar)


@contextmanager
def _open_out(out: Path) -> Iterator[io.BufferedIOBase]:
    with out.open("wb") as raw:
        if out.name.endswith(".gz"):
            # No file name and a zero mtime in the header: identical arguments give identical bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
                yield gz
        else:
            yield raw


def _event_chunks(sim: SimEvents, catalog: Catalog, order: np.ndarray) -> Iterator[list[Event]]:
    """Events in `order`, built a chunk at a time so a written file never holds them all in memory."""
    user_ids = [f"u{u}" for u in range(int(sim.user.max()) + 1)] if len(order) else []
    types, item_ids = EVENT_TYPES, catalog.item_ids
    for lo in range(0, len(order), _CHUNK):
        idx = order[lo : lo + _CHUNK]
        chunk: list[Event] = []
        for u, s, t, i, ts, q in zip(
            sim.user[idx].tolist(),
            sim.session[idx].tolist(),
            sim.type_[idx].tolist(),
            sim.item[idx].tolist(),
            sim.ts[idx].tolist(),
            idx.tolist(),
            strict=True,
        ):
            uid = user_ids[u]
            item = item_ids[i] if i >= 0 else None
            chunk.append(make_event(uid, types[t], ts, item, sim.query[q], f"{uid}-s{s}"))
        yield chunk


def _stats(sim: SimEvents) -> GenerationStats:
    counts = Counter(EVENT_TYPES[t].value for t in sim.type_.tolist())
    pairs = sim.user * (int(sim.session.max()) + 1) + sim.session if len(sim.ts) else sim.user
    return GenerationStats(
        events=len(sim.ts),
        users=len(np.unique(sim.user)),
        items=len(np.unique(sim.item[sim.item >= 0])),
        sessions=len(np.unique(pairs)),
        type_counts={t.value: counts.get(t.value, 0) for t in EVENT_TYPES},
        first_ts=int(sim.ts.min()) if len(sim.ts) else None,
        last_ts=int(sim.ts.max()) if len(sim.ts) else None,
    )

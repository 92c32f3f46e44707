"""Loading behavior events from files (every supported format, plain or gzip), bad rows counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Literal, get_args

import orjson

from behavior_stream.data.diginetica import diginetica_categories, read_diginetica
from behavior_stream.data.formats import (
    LoadReport,
    Rejected,
    Row,
    open_binary,
    read_gru4rec,
    read_jsonl,
    read_taobao,
)
from behavior_stream.schema.events import Event

__all__ = [
    "FORMATS",
    "Format",
    "LoadReport",
    "LoadResult",
    "RawReader",
    "Rejected",
    "iter_raw",
    "load_events",
    "write_jsonl",
]

log = logging.getLogger(__name__)

Format = Literal["jsonl", "taobao", "diginetica", "gru4rec"]
FORMATS: tuple[str, ...] = get_args(Format)

_by_ts = attrgetter("ts")


class RawReader:
    """Events and rejected rows of one file in file order; `report` and `categories` fill as it runs.

    Replay iterates this directly (to forward rejects too); `load_events` collects and sorts it.
    It can be iterated once, since the report counts what was read. A damaged gzip file raises
    ValueError where the damage is found, after the rows before it: `load_events` then keeps
    none of them (an error for the whole file), a direct iterator has to drop what it got.
    """

    def __init__(self, path: str | Path, fmt: Format, purchases: str | Path | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} for {path}; expected one of {FORMATS}")
        if purchases is not None and fmt != "diginetica":
            raise ValueError(f"purchases={purchases} only applies to the diginetica format, not {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        self.purchases = None if purchases is None else Path(purchases)
        self.report = LoadReport(str(self.path), fmt)
        self.categories: dict[str, str] = {}
        self._started = False

    def _rows(self) -> Iterator[Row]:
        if self.fmt == "taobao":
            return read_taobao(self.path, self.categories)
        if self.fmt == "diginetica":
            return read_diginetica(self.path, self.purchases, self.report)
        if self.fmt == "gru4rec":
            return read_gru4rec(self.path)
        return read_jsonl(self.path)

    def __iter__(self) -> Iterator[Row]:
        if self._started:
            raise RuntimeError(f"{self.path} is already being read; a RawReader can be iterated once")
        self._started = True
        report = self.report
        items: set[str] = set()
        for row in self._rows():
            report.rows += 1
            if isinstance(row, Rejected):
                report.malformed[row.reason] += 1
            else:
                report.events += 1
                if row.item_id is not None:
                    items.add(row.item_id)
            yield row
        if self.fmt == "diginetica":
            self.categories.update(diginetica_categories(self.path, items))
        elif self.fmt == "jsonl":
            self.categories.update(catalog_categories(self.path, items))


def catalog_sidecar(path: Path) -> Path:
    """The generator's catalog beside a JSONL log, `F.jsonl[.gz]` -> `F.items.json`: the rule of
    `simulate.generator.catalog_path_for`, restated because this layer cannot import that one."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return path.with_name(f"{name}.items.json")


def catalog_categories(path: Path, items: set[str]) -> dict[str, str]:
    """Item -> category of the log's `items` from its catalog sidecar ({} without one). The events
    carry no category, so this is the only place a generated log's categories come from.

    The sidecar is found, never named by the user, and only adds labels: one that cannot be read
    is a warning and costs the categories, never the events (as Diginetica's categories file)."""
    sidecar = catalog_sidecar(path)
    if not sidecar.exists():
        return {}
    try:
        rows = orjson.loads(sidecar.read_bytes())
    except OSError as exc:  # e.g. a directory of that name, or no permission to read it
        log.warning("%s: %s; no item categories", sidecar, exc.strerror or exc)
        return {}
    except orjson.JSONDecodeError as exc:
        log.warning("%s: not a JSON catalog (%s); no item categories", sidecar, exc)
        return {}
    if not isinstance(rows, list):
        log.warning("%s: expected a JSON list of catalog items; no item categories", sidecar)
        return {}
    categories: dict[str, str] = {}
    for row in rows:
        if isinstance(row, dict) and str(row.get("item_id")) in items and row.get("category") is not None:
            categories.setdefault(str(row["item_id"]), str(row["category"]))
    return categories


def iter_raw(path: str | Path, fmt: Format, *, purchases: str | Path | None = None) -> RawReader:
    """Stream a file's events and `Rejected` rows in file order (see `RawReader`)."""
    return RawReader(path, fmt, purchases)


@dataclass(frozen=True)
class LoadResult:
    """Events in time order, what the load did, and item -> category from the format's side data: Taobao's
    category column, Diginetica's product-categories.csv, a generated log's catalog sidecar ({} without)."""

    events: list[Event]
    report: LoadReport
    categories: dict[str, str]


def load_events(path: str | Path, fmt: Format, *, purchases: str | Path | None = None) -> LoadResult:
    """Load a file (plain or `.gz`) as events sorted by ts, ties in file order; bad rows are counted."""
    start = time.perf_counter()
    reader = RawReader(path, fmt, purchases)
    events = [row for row in reader if not isinstance(row, Rejected)]
    events.sort(key=_by_ts)  # stable: equal timestamps keep file order
    reader.report.seconds = time.perf_counter() - start
    if reader.report.malformed:
        log.warning("%s", reader.report.summary())
    else:
        log.info("%s", reader.report.summary())
    return LoadResult(events, reader.report, reader.categories)


def write_jsonl(events: Iterable[Event], path: str | Path) -> int:
    """Write events one JSON object per line (gzip when the name ends in `.gz`); returns the count."""
    path = Path(path)
    count = 0
    with open_binary(path, "wb") as f:
        for event in events:
            f.write(event.to_json() + b"\n")
            count += 1
    return count

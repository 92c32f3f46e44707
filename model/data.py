"""Loading behavior events from files, time-based train/valid/test splits, and evaluation sequences."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from model.events import Event
from model.formats import (
    LoadReport,
    Rejected,
    Row,
    diginetica_categories,
    open_binary,
    read_diginetica,
    read_gru4rec,
    read_jsonl,
    read_taobao,
)
from model.scoring import EvalSequence

__all__ = [
    "FORMATS",
    "Format",
    "LoadReport",
    "LoadResult",
    "RawReader",
    "Rejected",
    "Split",
    "SplitUnit",
    "default_split_unit",
    "eval_sequences",
    "group_by_user",
    "iter_raw",
    "load_events",
    "time_split",
    "write_jsonl",
]

log = logging.getLogger(__name__)

Format = Literal["jsonl", "taobao", "diginetica", "gru4rec"]
FORMATS: tuple[str, ...] = get_args(Format)
SplitUnit = Literal["event", "sequence"]

_by_ts = attrgetter("ts")


class RawReader:
    """Events and rejected rows of one file in file order; `report` and `categories` fill as it runs.

    Replay iterates this directly (to forward rejects too); `load_events` collects and sorts it.
    It can be iterated once, since the report counts what was read.
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


def iter_raw(path: str | Path, fmt: Format, *, purchases: str | Path | None = None) -> RawReader:
    """Stream a file's events and `Rejected` rows in file order (see `RawReader`)."""
    return RawReader(path, fmt, purchases)


@dataclass(frozen=True)
class LoadResult:
    """Events in time order, what the load did, and item -> category ({} when the format has none)."""

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


def group_by_user(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events per user, users in first-appearance order, each list in input order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.user_id, []).append(event)
    return groups


@dataclass(frozen=True)
class Split:
    """Train/valid/test events (time order) and the thresholds that separated them."""

    train: list[Event]
    valid: list[Event]
    test: list[Event]
    valid_start_ms: int
    test_start_ms: int


def default_split_unit(fmt: Format) -> SplitUnit:
    """Session datasets are split by whole sessions; long-lived user histories by event time."""
    return "sequence" if fmt in ("diginetica", "gru4rec") else "event"


def _thresholds(sorted_ts: np.ndarray, valid_frac: float, test_frac: float) -> tuple[int, int]:
    """(valid_start, test_start): the ts at the (1 - valid - test) and (1 - test) quantiles."""
    n = len(sorted_ts)
    n_test = round(n * test_frac)
    n_held = max(round(n * (valid_frac + test_frac)), n_test)
    # An empty part gets a threshold past every timestamp, so nothing lands in it.
    test_start = int(sorted_ts[n - n_test]) if n_test else int(sorted_ts[-1]) + 1
    valid_start = int(sorted_ts[n - n_held]) if n_held > n_test else test_start
    return valid_start, test_start


def time_split(
    events: Sequence[Event], valid_frac: float = 0.1, test_frac: float = 0.1, unit: SplitUnit = "event"
) -> Split:
    """Split by time. unit="event": cut at ts quantiles, so a user's history spans parts.
    unit="sequence": each user's whole sequence goes to the part its last event falls in
    (GRU4Rec-style session split), quantiles taken over sequences."""
    if not events:
        raise ValueError("cannot split an empty event list")
    if valid_frac < 0 or test_frac < 0 or valid_frac + test_frac >= 1:
        raise ValueError(f"need 0 <= valid_frac, test_frac and a sum < 1, got {valid_frac}, {test_frac}")
    if unit not in get_args(SplitUnit):
        raise ValueError(f"unknown split unit {unit!r}; expected one of {get_args(SplitUnit)}")
    ordered = sorted(events, key=_by_ts)
    if unit == "event":
        # (n_events,) the time each event is judged by: its own
        part_ts = np.fromiter((e.ts for e in ordered), dtype=np.int64, count=len(ordered))
        valid_start, test_start = _thresholds(part_ts, valid_frac, test_frac)
    else:
        last = {user: seq[-1].ts for user, seq in group_by_user(ordered).items()}
        ends = np.sort(np.fromiter(last.values(), dtype=np.int64, count=len(last)))  # (n_users,)
        valid_start, test_start = _thresholds(ends, valid_frac, test_frac)
        # (n_events,) the time each event is judged by: its sequence's end
        part_ts = np.fromiter((last[e.user_id] for e in ordered), dtype=np.int64, count=len(ordered))
    parts: tuple[list[Event], list[Event], list[Event]] = ([], [], [])
    for event, t in zip(ordered, part_ts.tolist(), strict=True):
        parts[2 if t >= test_start else 1 if t >= valid_start else 0].append(event)
    return Split(*parts, valid_start_ms=valid_start, test_start_ms=test_start)


def eval_sequences(history: Sequence[Event], test: Sequence[Event]) -> list[EvalSequence]:
    """One sequence per user in `test` (first-appearance order): context = the user's `history`
    events in time order, events = the user's test events. Raises if the context overlaps the test."""
    contexts = group_by_user(sorted(history, key=_by_ts))
    sequences = []
    for user, events in group_by_user(sorted(test, key=_by_ts)).items():
        context = contexts.get(user, [])
        if context and context[-1].ts > events[0].ts:
            raise ValueError(
                f"user {user!r}: history event at ts {context[-1].ts} is after the first test event "
                f"at ts {events[0].ts}; pass only events before the test period as history"
            )
        sequences.append(EvalSequence(user, tuple(context), tuple(events)))
    return sequences

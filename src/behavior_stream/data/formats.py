"""Row readers for the supported input formats: each turns lines of a file into events or rejects
(DIGINETICA's, with its purchases and categories, in `diginetica`).

Every row goes through `behavior_stream.schema.events.validate_event`, so a loader can never
produce an event that the stream would reject. Malformed rows become `Rejected` values and never abort a read.
"""

from __future__ import annotations

import codecs
import gzip
import io
import math
import zlib
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from behavior_stream.schema.events import Event, EventType, Invalid, Reason, parse_event, validate_event


class RowReason(StrEnum):
    """Why a CSV/TSV row was rejected before schema validation (schema reasons use `Reason`)."""

    WRONG_FIELD_COUNT = "wrong_field_count"
    BAD_NUMBER = "bad_number"
    BAD_DATE = "bad_date"
    UNKNOWN_BEHAVIOR = "unknown_behavior"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that produced no event: where it was, why, and its raw bytes (for a dead-letter topic)."""

    source: str
    line: int
    reason: str
    detail: str
    raw: bytes


@dataclass
class LoadReport:
    """What a read did. `rows` counts data rows of every file read (purchases included), so
    rows == events + n_malformed + purchases_without_session; `seconds` is set by `load_events`."""

    path: str
    format: str
    rows: int = 0
    events: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    purchase_rows: int = 0
    purchases_without_session: int = 0
    seconds: float = 0.0

    @property
    def n_malformed(self) -> int:
        """Total rejected rows over all reasons."""
        return sum(self.malformed.values())

    def summary(self) -> str:
        """One human-readable line."""
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.malformed.items())) or "none"
        text = (
            f"{self.format} {Path(self.path).name}: {self.rows:,} rows -> {self.events:,} events, "
            f"{self.n_malformed:,} malformed ({reasons})"
        )
        if self.purchase_rows:
            text += (
                f", {self.purchase_rows:,} purchase rows "
                f"({self.purchases_without_session:,} without a session in the views)"
            )
        return f"{text}, {self.seconds:.2f}s"


TAOBAO_BEHAVIORS: dict[str, EventType] = {
    "pv": EventType.CLICK,
    "cart": EventType.ADD_TO_CART,
    "fav": EventType.FAVORITE,
    "buy": EventType.PURCHASE,
}
GRU4REC_COLUMNS = ("SessionId", "ItemId", "Time")

Row = Event | Rejected


def open_binary(path: Path, mode: Literal["rb", "wb"] = "rb") -> io.BufferedIOBase:
    """Open a file for bytes, gzip-(de)compressed when its name ends in `.gz`; the caller closes it."""
    if path.suffix == ".gz":
        return gzip.open(path, mode)
    # Literal modes (not `mode`) so the buffered reader/writer types are known.
    return open(path, "rb") if mode == "rb" else open(path, "wb")


# What gzip raises for a damaged file, read as a whole: a cut-off stream (EOFError), bad deflate
# data (zlib.error), a bad header, CRC or length (BadGzipFile, an OSError without a filename).
_GZIP_DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile)


def _lines(path: Path) -> Generator[tuple[int, bytes], None, None]:
    """1-based line numbers and lines without their line ending (or the UTF-8 BOM of line 1).

    Every reader of a data or side file reads through here, so a damaged gzip file raises the same
    ValueError naming the file wherever it is read. That error is for the whole file: `load_events`
    keeps none of the rows read before the damage, since a truncated log that silently loaded its
    first part would train and evaluate on partial data without anyone noticing.
    """
    try:
        with open_binary(path) as f:
            for number, line in enumerate(f, 1):
                if number == 1:
                    line = line.removeprefix(codecs.BOM_UTF8)  # Excel and Notepad write one
                yield number, line.rstrip(b"\r\n")
    except _GZIP_DAMAGE as exc:
        raise ValueError(f"{path}: damaged or truncated gzip file ({exc})") from exc


class Table:
    """A delimited file with a header: column positions by name, then rows as string fields."""

    def __init__(self, path: Path, sep: str, required: tuple[str, ...]) -> None:
        self.path, self.sep = path, sep
        self._lines = _lines(path)
        first = next(self._lines, None)
        header = first[1].decode("utf-8", errors="replace").split(sep) if first else []
        missing = [name for name in required if name not in header]
        if missing:
            self._lines.close()
            raise ValueError(f"{path}: header {header!r} lacks column(s) {missing} (separator {sep!r})")
        self.width = len(header)
        self.col = {name: header.index(name) for name in required}

    def rows(self) -> Iterator[tuple[int, bytes, list[str] | Rejected]]:
        """(line, raw, fields) per data row; fields is a `Rejected` when the row cannot be split."""
        for number, raw in self._lines:
            yield number, raw, _split(str(self.path), number, raw, self.sep, self.width)


def _split(source: str, number: int, raw: bytes, sep: str, width: int) -> list[str] | Rejected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(source, number, Reason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}", raw)
    fields = text.split(sep)
    if len(fields) != width:
        detail = f"{len(fields)} fields, expected {width}"
        return Rejected(source, number, RowReason.WRONG_FIELD_COUNT, detail, raw)
    return fields


def validated(record: dict[str, Any], source: str, number: int, raw: bytes) -> Row:
    """The event of a schema `record` built from line `number` of `source`, or why it is rejected."""
    result = validate_event(record)
    if isinstance(result, Invalid):
        return Rejected(source, number, result.reason, result.detail, raw)
    return result


def session_record(session: str, type_: EventType, item: str, ts: int) -> dict[str, Any]:
    """A schema record for session datasets, where each session stands for one user."""
    return {"user_id": session, "session_id": session, "type": type_, "item_id": item, "ts": ts}


def read_jsonl(path: Path) -> Iterator[Row]:
    """One schema JSON object per line; blank lines are not rows."""
    for number, raw in _lines(path):
        if not raw.strip():
            continue
        result = parse_event(raw)
        if isinstance(result, Invalid):
            yield Rejected(str(path), number, result.reason, result.detail, raw)
        else:
            yield result


def read_taobao(path: Path, categories: dict[str, str]) -> Iterator[Row]:
    """Taobao UserBehavior CSV `user,item,category,behavior,ts_seconds` (no header)."""
    source = str(path)
    for number, raw in _lines(path):
        fields = _split(source, number, raw, ",", 5)
        if isinstance(fields, Rejected):
            yield fields
            continue
        user, item, category, behavior, seconds = fields
        type_ = TAOBAO_BEHAVIORS.get(behavior)
        if type_ is None:
            yield Rejected(source, number, RowReason.UNKNOWN_BEHAVIOR, f"behavior {behavior[:40]!r}", raw)
            continue
        try:
            ts = int(seconds) * 1000
        except ValueError:
            yield Rejected(source, number, RowReason.BAD_NUMBER, f"timestamp {seconds[:40]!r}", raw)
            continue
        row = validated({"user_id": user, "type": type_, "item_id": item, "ts": ts}, source, number, raw)
        if isinstance(row, Event) and category:
            # First category seen wins: the source has a handful of items listed under two.
            categories.setdefault(item, category)
        yield row


def read_gru4rec(path: Path) -> Iterator[Row]:
    """GRU4Rec TSV `SessionId<TAB>ItemId<TAB>Time` (seconds, may be fractional); all clicks."""
    table = Table(path, "\t", GRU4REC_COLUMNS)
    session, item, time = (table.col[c] for c in GRU4REC_COLUMNS)
    source = str(path)
    for number, raw, fields in table.rows():
        if isinstance(fields, Rejected):
            yield fields
            continue
        try:
            seconds = float(fields[time])
        except ValueError:
            yield Rejected(source, number, RowReason.BAD_NUMBER, f"Time {fields[time][:40]!r}", raw)
            continue
        ms = seconds * 1000  # checked after scaling: a finite Time near the float limit overflows here
        if not math.isfinite(ms):
            detail = f"Time {fields[time][:40]!r} is not finite in ms"
            yield Rejected(source, number, Reason.BAD_TIMESTAMP, detail, raw)
            continue
        record = session_record(fields[session], EventType.CLICK, fields[item], round(ms))
        yield validated(record, source, number, raw)

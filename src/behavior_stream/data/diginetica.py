"""DIGINETICA (CIKM Cup 2016): item views per session, the purchases of those sessions, and the
item categories of `product-categories.csv` beside the views file.

Each session stands for one user. Timestamps are a day (`eventdate`) plus milliseconds since the
session started (`timeframe`), so a purchase is dated from its session's first view.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from behavior_stream.data.formats import (
    LoadReport,
    Rejected,
    Row,
    RowReason,
    Table,
    session_record,
    validated,
)
from behavior_stream.schema.events import Event, EventType

log = logging.getLogger(__name__)

DIGINETICA_VIEWS = ("session_id", "item_id", "timeframe", "eventdate")
DIGINETICA_PURCHASES = ("sessionId", "timeframe", "eventdate", "itemId")
DIGINETICA_CATEGORIES_FILE = "product-categories.csv"


def _day_ms(day: str, cache: dict[str, int]) -> int:
    """Midnight UTC of an ISO date in ms; raises ValueError for a malformed date."""
    ms = cache.get(day)
    if ms is None:
        ms = cache[day] = calendar.timegm(date.fromisoformat(day).timetuple()) * 1000
    return ms


def _diginetica_ts(day: str, timeframe: str, days: dict[str, int]) -> int | tuple[RowReason, str]:
    try:
        offset = int(timeframe)
    except ValueError:
        return RowReason.BAD_NUMBER, f"timeframe {timeframe[:40]!r}"
    try:
        return _day_ms(day, days) + offset
    except ValueError:
        return RowReason.BAD_DATE, f"eventdate {day[:40]!r}"


def read_diginetica(path: Path, purchases: Path | None, report: LoadReport) -> Iterator[Row]:
    """DIGINETICA item views (each session is a user), then the purchases of those sessions."""
    days: dict[str, int] = {}
    # Session -> midnight of its first view's day: a purchase's timeframe counts from the session
    # start, while its own eventdate is the day of the purchase, often days later.
    session_day: dict[str, str] = {}
    views = Table(path, ";", DIGINETICA_VIEWS)
    session, item, timeframe, day = (views.col[c] for c in DIGINETICA_VIEWS)
    for number, raw, fields in views.rows():
        if isinstance(fields, Rejected):
            yield fields
            continue
        ts = _diginetica_ts(fields[day], fields[timeframe], days)
        if isinstance(ts, tuple):
            yield Rejected(str(path), number, ts[0], ts[1], raw)
            continue
        sid = fields[session]
        row = validated(session_record(sid, EventType.CLICK, fields[item], ts), str(path), number, raw)
        if isinstance(row, Event):
            session_day.setdefault(sid, fields[day])
        yield row
    if purchases is not None:
        yield from _diginetica_purchases(purchases, session_day, days, report)


def _diginetica_purchases(
    path: Path, session_day: dict[str, str], days: dict[str, int], report: LoadReport
) -> Iterator[Row]:
    table = Table(path, ";", DIGINETICA_PURCHASES)
    session, timeframe, item = (table.col[c] for c in ("sessionId", "timeframe", "itemId"))
    for number, raw, fields in table.rows():
        report.purchase_rows += 1
        if isinstance(fields, Rejected):
            yield fields
            continue
        sid = fields[session]
        day = session_day.get(sid)
        if day is None:
            # Not malformed: the purchases file covers all sessions, the views only a sample.
            report.purchases_without_session += 1
            report.rows += 1
            continue
        ts = _diginetica_ts(day, fields[timeframe], days)
        if isinstance(ts, tuple):
            yield Rejected(str(path), number, ts[0], ts[1], raw)
            continue
        yield validated(session_record(sid, EventType.PURCHASE, fields[item], ts), str(path), number, raw)


def diginetica_categories(views: Path, items: set[str]) -> dict[str, str]:
    """Item -> category from `product-categories.csv` beside the views file ({} when absent).

    The file is found, never named by the user, and only adds labels: one that cannot be read
    (bad header, damaged, a directory) is a warning and costs the categories, never the events.
    """
    path = views.parent / DIGINETICA_CATEGORIES_FILE
    if not path.exists():
        return {}
    try:
        return _read_categories(path, items)
    except OSError as exc:  # e.g. a directory of that name, or no permission to read it
        log.warning("%s: %s; no item categories", path, exc.strerror or exc)
    except ValueError as exc:  # a bad header or damaged file: the message names the file
        log.warning("%s; no item categories", exc)
    return {}


def _read_categories(path: Path, items: set[str]) -> dict[str, str]:
    table = Table(path, ";", ("itemId", "categoryId"))
    item_col, category_col = table.col["itemId"], table.col["categoryId"]
    categories: dict[str, str] = {}
    for _, _, fields in table.rows():
        if not isinstance(fields, Rejected) and fields[item_col] in items and fields[category_col]:
            categories.setdefault(fields[item_col], fields[category_col])
    return categories

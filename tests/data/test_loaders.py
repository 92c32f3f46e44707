"""Tests for the loaders (on the real samples and small crafted files), splits and eval sequences."""

from __future__ import annotations

import csv
import gzip
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from behavior_stream.data.loaders import FORMATS, LoadResult, Rejected, iter_raw, load_events, write_jsonl
from behavior_stream.data.splits import default_split_unit, eval_sequences, group_by_user, time_split
from behavior_stream.schema.events import MAX_TS_MS, Event, EventType, Reason, make_event

BEHAVIOR = {"pv": "click", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}


def midnight_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * 1000


def triples(events: list[Event]) -> list[tuple[str, str | None, int]]:
    return [(e.user_id, e.item_id, e.ts) for e in events]


def read_csv(path: Path, sep: str) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


@pytest.fixture(scope="module")
def taobao_path(shared_data: Path) -> Path:
    return shared_data / "taobao" / "UserBehavior_prefix.csv"


@pytest.fixture(scope="module")
def taobao(taobao_path: Path) -> LoadResult:
    return load_events(taobao_path, "taobao")


@pytest.fixture(scope="module")
def views_path(shared_data: Path) -> Path:
    return shared_data / "diginetica" / "sample_train-item-views.csv"


@pytest.fixture(scope="module")
def diginetica(views_path: Path) -> LoadResult:
    return load_events(views_path, "diginetica")


# --- taobao -------------------------------------------------------------------------------------


def test_taobao_matches_an_independent_parse_of_the_file(taobao: LoadResult, taobao_path: Path) -> None:
    rows = read_csv(taobao_path, ",")
    complete = [r for r in rows if len(r) == 5]
    expected = sorted(((u, i, int(t) * 1000) for u, i, _, _, t in complete), key=lambda x: x[2])
    assert triples(taobao.events) == expected  # time order, ties in file order
    assert Counter(e.type.value for e in taobao.events) == Counter(BEHAVIOR[r[3]] for r in complete)
    assert taobao.report.rows == len(rows)
    assert taobao.report.malformed == Counter({"wrong_field_count": len(rows) - len(complete)})
    first_category: dict[str, str] = {}
    for _, item, category, _, _ in complete:
        first_category.setdefault(item, category)
    assert taobao.categories == first_category


def test_taobao_documented_figures(taobao: LoadResult) -> None:
    """The figures in the data README."""
    assert len(taobao.events) == taobao.report.events == 84_475
    assert Counter(e.type for e in taobao.events) == {
        EventType.CLICK: 75_872,
        EventType.ADD_TO_CART: 4_497,
        EventType.FAVORITE: 2_356,
        EventType.PURCHASE: 1_750,
    }
    users = group_by_user(taobao.events)
    assert len(users) == 815
    assert sum(any(e.type is EventType.PURCHASE for e in seq) for seq in users.values()) == 559
    assert len(taobao.categories) == 55_368
    assert len(set(taobao.categories.values())) <= 2_914
    assert taobao.report.n_malformed == 1
    assert "84,475 events" in taobao.report.summary() and "wrong_field_count 1" in taobao.report.summary()


def test_taobao_event_ids_are_derived_from_content(taobao: LoadResult, taobao_path: Path) -> None:
    expected = {
        make_event(u, EventType(BEHAVIOR[b]), int(t) * 1000, item_id=i).event_id
        for u, i, _, b, t in read_csv(taobao_path, ",")[:1000]
    }
    assert expected <= {e.event_id for e in taobao.events}
    assert all(e.session_id is None and e.query is None for e in taobao.events)


# --- diginetica ---------------------------------------------------------------------------------


def test_diginetica_views_match_an_independent_parse(diginetica: LoadResult, views_path: Path) -> None:
    header, *rows = read_csv(views_path, ";")
    assert header == ["session_id", "user_id", "item_id", "timeframe", "eventdate"]
    expected = sorted(((s, i, midnight_ms(d) + int(tf)) for s, _, i, tf, d in rows), key=lambda x: x[2])
    assert triples(diginetica.events) == expected
    assert all(e.session_id == e.user_id and e.type is EventType.CLICK for e in diginetica.events)
    assert diginetica.report.rows == diginetica.report.events == len(rows)
    assert not diginetica.report.malformed


def test_diginetica_documented_figures(diginetica: LoadResult) -> None:
    # The README says 12,390 views: that is `wc -l` minus the header, but the file's last line has
    # no newline, so it holds 12,391 rows (the independent parse above agrees).
    assert len(diginetica.events) == 12_391
    sessions = group_by_user(diginetica.events)
    assert len(sessions) == 2_986
    assert sum(len(s) == 1 for s in sessions.values()) == 933
    assert len({e.item_id for e in diginetica.events}) == 7_139


def test_diginetica_categories_come_from_the_catalog_file(diginetica: LoadResult, shared_data: Path) -> None:
    catalog = dict(read_csv(shared_data / "diginetica" / "product-categories.csv", ";")[1:])
    items = {e.item_id for e in diginetica.events}
    assert diginetica.categories == {i: catalog[i] for i in items if i in catalog}
    assert set(diginetica.categories) == items  # the catalog covers every viewed item


def test_diginetica_purchases_join_only_sessions_in_the_views(views_path: Path, shared_data: Path) -> None:
    purchases_path = shared_data / "diginetica" / "train-purchases.csv"
    joined = load_events(views_path, "diginetica", purchases=purchases_path)
    views = read_csv(views_path, ";")[1:]
    purchases = read_csv(purchases_path, ";")[1:]
    first_day: dict[str, str] = {}
    for session, _, _, _, day in views:
        first_day.setdefault(session, day)
    in_sample = [p for p in purchases if p[0] in first_day]
    bought = [e for e in joined.events if e.type is EventType.PURCHASE]
    assert len(bought) == len(in_sample) == 256
    assert len({e.user_id for e in bought}) == 138
    # A purchase's timeframe counts from its session's start, so it is placed from the views' day.
    expected = [(s, i, midnight_ms(first_day[s]) + int(tf)) for s, _, tf, _, _, i in in_sample]
    assert sorted(triples(bought)) == sorted(expected)
    report = joined.report
    assert report.purchase_rows == len(purchases)
    assert report.purchases_without_session == len(purchases) - len(in_sample)
    assert report.rows == len(views) + len(purchases) == report.events + report.purchases_without_session
    assert not report.malformed
    assert all(b.ts <= c.ts for b, c in zip(joined.events, joined.events[1:], strict=False))


# --- compressed, gru4rec and jsonl files --------------------------------------------------------


def test_gz_input_loads_like_the_plain_file(tmp_path: Path, views_path: Path, diginetica: LoadResult) -> None:
    packed = tmp_path / "views.csv.gz"
    with open(views_path, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    loaded = load_events(packed, "diginetica")
    assert loaded.events == diginetica.events
    assert loaded.categories == {}  # no product-categories.csv beside the copy


def test_gru4rec_file(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(
        "SessionId\tItemId\tTime\n"
        "s1\t10\t1462752000.5\n"
        "s2\t11\t1462751000\n"
        "s1\t12\t1462752000.5\n"  # same time as the row above: file order decides
        "s1\t13\n"
        "s2\t14\tsoon\n"
        "s2\t15\tnan\n"
        "s2\t\t1462752100\n"
    )
    loaded = load_events(path, "gru4rec")
    assert triples(loaded.events) == [
        ("s2", "11", 1_462_751_000_000),
        ("s1", "10", 1_462_752_000_500),
        ("s1", "12", 1_462_752_000_500),
    ]
    assert all(e.type is EventType.CLICK and e.session_id == e.user_id for e in loaded.events)
    assert loaded.report.malformed == Counter(
        {"wrong_field_count": 1, "bad_number": 1, "bad_timestamp": 1, "empty_field": 1}
    )
    assert loaded.report.rows == 7


def test_gru4rec_converted_from_diginetica_loads_the_same_sequences(
    tmp_path: Path, diginetica: LoadResult
) -> None:
    path = tmp_path / "diginetica.tsv"
    lines = [f"{e.user_id}\t{e.item_id}\t{e.ts / 1000:.3f}" for e in diginetica.events]
    path.write_text("SessionId\tItemId\tTime\n" + "\n".join(lines) + "\n")
    converted = load_events(path, "gru4rec")
    assert triples(converted.events) == triples(diginetica.events)
    a, b = time_split(converted.events, unit="sequence"), time_split(diginetica.events, unit="sequence")
    assert (triples(a.train), triples(a.valid), triples(a.test)) == (
        triples(b.train),
        triples(b.valid),
        triples(b.test),
    )


def test_jsonl_invalid_lines_are_counted_by_reason(tmp_path: Path) -> None:
    good = [
        make_event("u1", EventType.CLICK, 1_600_000_002_000, item_id="i1"),
        make_event("u2", EventType.SEARCH, 1_600_000_001_000, query="shoes"),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        good[0].to_json()
        + b"\n"
        + b"not json\n"
        + b"\n"  # blank lines are not rows
        + b'{"user_id": "u3", "type": "view", "item_id": "i", "ts": 1600000000000}\n'
        + b'{"user_id": "u3", "type": "click", "item_id": "i", "ts": 1600000000}\n'
        + b"[1]\n"
        + good[1].to_json()
        + b"\r\n"
    )
    loaded = load_events(path, "jsonl")
    assert loaded.events == [good[1], good[0]]
    assert loaded.report.malformed == Counter(
        {Reason.NOT_JSON: 1, Reason.UNKNOWN_TYPE: 1, Reason.BAD_TIMESTAMP: 1, Reason.NOT_OBJECT: 1}
    )
    assert loaded.report.rows == 6 and loaded.categories == {}


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_write_jsonl_round_trips(tmp_path: Path, diginetica: LoadResult, name: str) -> None:
    path = tmp_path / name
    assert write_jsonl(diginetica.events[:500], path) == 500
    assert load_events(path, "jsonl").events == diginetica.events[:500]
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


# --- malformed rows -----------------------------------------------------------------------------


def test_malformed_taobao_rows_are_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(
        b"1,100,7,pv,1511544070\n"
        b"1,101,7,pv\n"  # wrong field count
        b"1,102,7,pv,1511544070,extra\n"
        b"1,103,7,pv,yesterday\n"  # bad number
        b"1,104,7,like,1511544070\n"  # unknown behavior
        b",105,7,pv,1511544070\n"  # empty user
        b"1,,7,buy,1511544070\n"  # empty item
        b"1,106,7,pv,-5\n"  # negative ts
        b"1,107,7,pv,1511544070000\n"  # already in ms: far future once scaled
        + f"1,108,7,pv,{MAX_TS_MS // 1000}\n".encode()
        + b"1,\xff\xfe,7,pv,1511544070\n"  # not UTF-8
        + b"1,"
        + b"9" * 300
        + b",7,pv,1511544070\n"  # id too long
        b"2,109,,cart,1511544000\n"  # no category: still an event
    )
    loaded = load_events(path, "taobao")
    assert triples(loaded.events) == [("2", "109", 1_511_544_000_000), ("1", "100", 1_511_544_070_000)]
    assert loaded.categories == {"100": "7"}
    assert loaded.report.malformed == Counter(
        {
            "wrong_field_count": 2,
            "bad_number": 1,
            "unknown_behavior": 1,
            "empty_field": 2,
            "bad_timestamp": 3,
            "not_utf8": 1,
            "field_too_long": 1,
        }
    )
    assert loaded.report.rows == 13


def test_iter_raw_streams_rejects_in_file_order_with_their_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"1,100,7,pv,1511544070\n1,101,7,pv\n2,102,8,buy,1511540000\n")
    reader = iter_raw(path, "taobao")
    rows = list(reader)
    assert [type(r) for r in rows] == [Event, Rejected, Event]  # file order, not time order
    bad = rows[1]
    assert isinstance(bad, Rejected)
    assert (bad.line, bad.reason, bad.raw, bad.source) == (2, "wrong_field_count", b"1,101,7,pv", str(path))
    assert (reader.report.rows, reader.report.events) == (3, 2)
    with pytest.raises(RuntimeError, match="once"):
        list(reader)


def test_malformed_diginetica_rows(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;10;0;2016-05-09\n"
        "1;NA;11;later;2016-05-09\n"
        "1;NA;12;5;2016-13-40\n"
        "1;NA;13;5\n"
        "2;NA;14;100;1999-12-31\n"
    )
    loaded = load_events(path, "diginetica")
    assert triples(loaded.events) == [("1", "10", midnight_ms("2016-05-09"))]
    assert loaded.report.malformed == Counter(
        {"bad_number": 1, "bad_date": 1, "wrong_field_count": 1, "bad_timestamp": 1}
    )


def test_wrong_header_or_format_is_an_error_naming_the_input(tmp_path: Path) -> None:
    path = tmp_path / "views.csv"
    path.write_text("session;item;time\n1;2;3\n")
    with pytest.raises(ValueError, match=r"views\.csv"):
        load_events(path, "diginetica")
    with pytest.raises(ValueError, match="SessionId"):
        load_events(path, "gru4rec")
    with pytest.raises(ValueError, match="unknown format"):
        load_events(path, "csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="purchases"):
        load_events(path, "taobao", purchases=path)


# --- splits and evaluation sequences ------------------------------------------------------------


def synthetic(n_users: int, per_user: int) -> list[Event]:
    """User u's k-th event at a distinct time; users interleave."""
    base = 1_600_000_000_000
    events = [
        make_event(f"u{u}", EventType.CLICK, base + (k * n_users + u) * 1000, item_id=f"i{k}")
        for u in range(n_users)
        for k in range(per_user)
    ]
    return sorted(events, key=lambda e: e.ts)


def test_event_split_cuts_at_time_quantiles(taobao: LoadResult) -> None:
    events = taobao.events
    split = time_split(events, 0.1, 0.1, unit="event")
    assert Counter(split.train + split.valid + split.test) == Counter(events)
    assert all(e.ts < split.valid_start_ms for e in split.train)
    assert all(split.valid_start_ms <= e.ts < split.test_start_ms for e in split.valid)
    assert all(e.ts >= split.test_start_ms for e in split.test)
    n = len(events)
    assert abs(len(split.test) - 0.1 * n) < 0.01 * n and abs(len(split.valid) - 0.1 * n) < 0.01 * n
    for part in (split.train, split.valid, split.test):
        assert [e.ts for e in part] == sorted(e.ts for e in part)


def test_event_split_exact_sizes_and_empty_parts() -> None:
    events = synthetic(5, 4)  # 20 distinct timestamps
    split = time_split(events, 0.2, 0.1)
    assert (len(split.train), len(split.valid), len(split.test)) == (14, 4, 2)
    no_test = time_split(events, 0.25, 0.0)
    assert (len(no_test.train), len(no_test.valid), len(no_test.test)) == (15, 5, 0)
    assert no_test.test_start_ms > events[-1].ts


def test_sequence_split_keeps_sequences_whole(diginetica: LoadResult) -> None:
    split = time_split(diginetica.events, 0.1, 0.1, unit="sequence")
    parts = [group_by_user(p) for p in (split.train, split.valid, split.test)]
    assert sum(len(p) for p in parts) == len(group_by_user(diginetica.events))
    train_users, valid_users, test_users = (set(p) for p in parts)
    assert not (train_users & valid_users or train_users & test_users or valid_users & test_users)
    train, valid, test = ([seq[-1].ts for seq in p.values()] for p in parts)
    assert max(train) < split.valid_start_ms <= min(valid)
    assert max(valid) < split.test_start_ms <= min(test)
    n = sum(len(p) for p in parts)
    assert abs(len(test) - 0.1 * n) <= 0.01 * n and abs(len(valid) - 0.1 * n) <= 0.01 * n
    assert Counter(split.train + split.valid + split.test) == Counter(diginetica.events)


def test_split_rejects_bad_arguments() -> None:
    events = synthetic(2, 2)
    with pytest.raises(ValueError, match="empty"):
        time_split([])
    with pytest.raises(ValueError, match="sum"):
        time_split(events, 0.5, 0.5)
    with pytest.raises(ValueError, match="sum"):
        time_split(events, -0.1, 0.1)


def test_default_split_unit() -> None:
    assert {f: default_split_unit(f) for f in FORMATS} == {  # type: ignore[arg-type]
        "jsonl": "event",
        "taobao": "event",
        "diginetica": "sequence",
        "gru4rec": "sequence",
    }


def test_group_by_user_preserves_order() -> None:
    events = synthetic(3, 3)
    groups = group_by_user(events)
    assert list(groups) == ["u0", "u1", "u2"]
    assert all([e.item_id for e in seq] == ["i0", "i1", "i2"] for seq in groups.values())


def test_eval_sequences_separate_context_from_test(taobao: LoadResult) -> None:
    split = time_split(taobao.events, unit="event")
    history = split.train + split.valid
    sequences = eval_sequences(history, split.test)
    by_user = group_by_user(history)
    assert [s.key for s in sequences] == list(group_by_user(split.test))
    for seq in sequences:
        assert list(seq.events) == [e for e in split.test if e.user_id == seq.key]
        assert list(seq.context) == by_user.get(seq.key, [])
        assert all(e.ts < split.test_start_ms <= seq.events[0].ts for e in seq.context)
    assert sum(len(s.events) for s in sequences) == len(split.test)
    assert any(s.context for s in sequences)


def test_eval_sequences_of_whole_sessions_have_no_context(diginetica: LoadResult) -> None:
    split = time_split(diginetica.events, unit="sequence")
    sequences = eval_sequences(split.train + split.valid, split.test)
    assert sequences and all(not s.context for s in sequences)


def test_eval_sequences_refuse_history_after_the_test_start() -> None:
    events = synthetic(2, 4)
    with pytest.raises(ValueError, match="u0"):
        eval_sequences(events, events[:2])

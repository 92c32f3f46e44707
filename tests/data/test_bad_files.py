"""Bad input files: damaged gzip, rows whose numbers overflow, a BOM, blank ids, broken side files."""

from __future__ import annotations

import gzip
import logging
import re
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from behavior_stream.data.loaders import Format, load_events, write_jsonl
from behavior_stream.schema.events import EventType, make_event
from tests.cli.clirun import run_cli
from tests.cli.test_bad_input import assert_one_line

TS_S = 1_511_544_070  # 2017-11-24 in seconds
DIGINETICA_HEADER = "session_id;user_id;item_id;timeframe;eventdate\n"
PURCHASES_HEADER = "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"


def jsonl_bytes(n: int = 3000) -> bytes:
    """n valid click events, one JSON object per line."""
    events = (
        make_event(f"u{k % 97}", EventType.CLICK, TS_S * 1000 + k, item_id=f"i{k * 7919 % 5003}")
        for k in range(n)
    )
    return b"".join(e.to_json() + b"\n" for e in events)


# One valid plain-text file per format (at least tens of KB, so a cut lands inside the deflate data).
VALID_TEXT: dict[str, Callable[[], bytes]] = {
    "jsonl": jsonl_bytes,
    "taobao": lambda: "".join(f"{k % 50},{k},{k % 9},pv,{TS_S + k}\n" for k in range(4000)).encode(),
    "gru4rec": lambda: (
        "SessionId\tItemId\tTime\n" + "".join(f"s{k % 60}\t{k}\t{TS_S + k}.5\n" for k in range(4000))
    ).encode(),
    "diginetica": lambda: (
        DIGINETICA_HEADER + "".join(f"{k % 60};NA;{k};{k * 10};2016-05-09\n" for k in range(4000))
    ).encode(),
}


def truncated(data: bytes) -> bytes:
    """A gzip file cut off in the middle, as an interrupted download leaves it."""
    packed = gzip.compress(data, mtime=0)
    return packed[: len(packed) // 2]


def bad_crc(data: bytes) -> bytes:
    """A complete gzip file whose trailer CRC does not match the data (a flipped bit somewhere)."""
    packed = bytearray(gzip.compress(data, mtime=0))
    (crc,) = struct.unpack("<I", packed[-8:-4])
    packed[-8:-4] = struct.pack("<I", crc ^ 1)
    return bytes(packed)


def bad_length(data: bytes) -> bytes:
    """A complete gzip file whose trailer states the wrong uncompressed size."""
    packed = bytearray(gzip.compress(data, mtime=0))
    packed[-4:] = struct.pack("<I", (len(data) + 1) % 2**32)
    return bytes(packed)


def bad_deflate(_: bytes) -> bytes:
    """A gzip header followed by a deflate block of the reserved type 3 (zlib.error)."""
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07"


def not_gzip(data: bytes) -> bytes:
    """A plain file that only has a .gz name."""
    return data


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": truncated,
    "crc": bad_crc,
    "length": bad_length,
    "deflate": bad_deflate,
    "not-gzip": not_gzip,
}


def gz_file(tmp_path: Path, name: str, data: bytes, damage: str) -> Path:
    path = tmp_path / name
    path.write_bytes(DAMAGES[damage](data))
    return path


def damaged_gzip_message(path: Path) -> str:
    return re.escape(str(path)) + r": damaged or truncated gzip file \("


# --- 1. damaged gzip files ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("fmt", list(VALID_TEXT))
def test_damaged_gzip_is_a_value_error_naming_the_file(tmp_path: Path, fmt: Format, damage: str) -> None:
    data = VALID_TEXT[fmt]()
    intact = tmp_path / "intact.gz"
    intact.write_bytes(gzip.compress(data, mtime=0))
    assert load_events(intact, fmt).report.events > 1000  # the data itself is good
    path = gz_file(tmp_path, f"events-{fmt}.gz", data, damage)
    # A ValueError for the whole file, never EOFError, zlib.error or BadGzipFile, and no partial result.
    with pytest.raises(ValueError, match=damaged_gzip_message(path)):
        load_events(path, fmt)


@pytest.mark.parametrize("damage", ["truncated", "deflate"])
def test_damaged_gzip_purchases_file_is_a_value_error_naming_it(tmp_path: Path, damage: str) -> None:
    views = tmp_path / "views.csv"
    views.write_bytes(VALID_TEXT["diginetica"]())
    rows = "".join(f"{k};NA;{k * 10 + 5};2016-05-09;{k};{k}\n" for k in range(0, 4000, 3))
    purchases = gz_file(tmp_path, "purchases.csv.gz", (PURCHASES_HEADER + rows).encode(), damage)
    with pytest.raises(ValueError, match=damaged_gzip_message(purchases)):
        load_events(views, "diginetica", purchases=purchases)


def test_missing_gzip_file_stays_an_os_error_with_its_name(tmp_path: Path) -> None:
    """Only damage becomes the gzip ValueError: a file that is not there is still FileNotFoundError."""
    path = tmp_path / "absent.jsonl.gz"
    with pytest.raises(FileNotFoundError) as info:
        load_events(path, "jsonl")
    assert info.value.filename == str(path)


@pytest.mark.parametrize("damage", ["truncated", "deflate"])
def test_train_on_a_damaged_gzip_file_says_so_in_one_line(tmp_path: Path, damage: str) -> None:
    path = gz_file(tmp_path, "events.jsonl.gz", jsonl_bytes(), damage)
    result = run_cli(["train", str(path), "--out", str(tmp_path / "m.pt"), "--no-progress"], cwd=tmp_path)
    line = assert_one_line(result, "train", str(path), "damaged or truncated gzip file")
    assert "unexpected" not in line


# --- 2. numbers too large for their column ------------------------------------------------------


def test_gru4rec_time_overflowing_in_ms_is_a_bad_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(
        "SessionId\tItemId\tTime\n"
        f"s1\t10\t{TS_S}\n"
        "s1\t11\t1e308\n"  # finite in seconds, infinite once scaled to ms
        "s1\t12\t-1e308\n"
        "s1\t13\t1e306\n"
        "s1\t14\t1e300\n"  # finite in ms, far outside the valid range
        "s1\t15\tinf\n"
        f"s1\t16\t{TS_S + 1}\n"
    )
    loaded = load_events(path, "gru4rec")
    assert [e.item_id for e in loaded.events] == ["10", "16"]
    assert loaded.report.malformed == Counter({"bad_timestamp": 5})


def test_huge_numbers_in_taobao_and_diginetica_are_counted(tmp_path: Path) -> None:
    taobao = tmp_path / "taobao.csv"
    taobao.write_text(
        f"1,100,7,pv,{TS_S}\n1,101,7,pv,{'9' * 30}\n1,102,7,pv,-{'9' * 30}\n1,103,7,pv,{'9' * 5000}\n"
    )
    loaded = load_events(taobao, "taobao")
    assert [e.item_id for e in loaded.events] == ["100"]
    # 5000 digits are past Python's int-parsing limit: not a number at all, but still only a bad row.
    assert loaded.report.malformed == Counter({"bad_timestamp": 2, "bad_number": 1})
    views = tmp_path / "views.csv"
    views.write_text(f"{DIGINETICA_HEADER}1;NA;10;0;2016-05-09\n1;NA;11;{'9' * 30};2016-05-09\n")
    loaded = load_events(views, "diginetica")
    assert [e.item_id for e in loaded.events] == ["10"]
    assert loaded.report.malformed == Counter({"bad_timestamp": 1})


def test_jsonl_ts_beyond_64_bits_is_a_bad_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    ok = make_event("u1", EventType.CLICK, TS_S * 1000, item_id="i1")
    path.write_bytes(
        ok.to_json()
        + b"\n"
        + b'{"user_id": "u1", "type": "click", "item_id": "i2", "ts": 123456789012345678901}\n'
        + b'{"user_id": "u1", "type": "click", "item_id": "i3", "ts": -99999999999999999999}\n'
        # A float in the valid range is still a type error: only its size makes a float a bad timestamp.
        + b'{"user_id": "u1", "type": "click", "item_id": "i4", "ts": 1511544070000.0}\n'
    )
    loaded = load_events(path, "jsonl")
    assert loaded.events == [ok]
    assert loaded.report.malformed == Counter({"bad_timestamp": 2, "wrong_type": 1})


# --- 3. byte order mark -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_jsonl_with_a_bom_keeps_its_first_row(tmp_path: Path, name: str) -> None:
    events = [make_event("u1", EventType.CLICK, TS_S * 1000 + k, item_id=f"i{k}") for k in range(3)]
    plain = tmp_path / "plain.jsonl"
    write_jsonl(events, plain)
    path = tmp_path / name
    data = b"\xef\xbb\xbf" + plain.read_bytes()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    loaded = load_events(path, "jsonl")
    assert loaded.events == events
    assert not loaded.report.malformed


def test_taobao_with_a_bom_does_not_put_it_in_the_first_user_id(tmp_path: Path) -> None:
    path = tmp_path / "taobao.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"1,100,7,pv,{TS_S}\n1,101,7,pv,{TS_S + 1}\n".encode())
    loaded = load_events(path, "taobao")
    assert [e.user_id for e in loaded.events] == ["1", "1"]


# --- 5. blank ids -------------------------------------------------------------------------------


def test_whitespace_only_ids_are_empty_fields_in_every_format(tmp_path: Path) -> None:
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        f'{{"user_id": "u1", "type": "click", "item_id": "i1", "ts": {TS_S * 1000}}}\n'
        f'{{"user_id": "   ", "type": "click", "item_id": "i1", "ts": {TS_S * 1000}}}\n'
        f'{{"user_id": "u1", "type": "click", "item_id": "\\t", "ts": {TS_S * 1000}}}\n'
        f'{{"user_id": "u1", "type": "click", "item_id": "i1", "session_id": " ", "ts": {TS_S * 1000}}}\n'
        f'{{"user_id": "u 1", "type": "click", "item_id": "i 1", "ts": {TS_S * 1000}}}\n'  # inner space: fine
    )
    loaded = load_events(jsonl, "jsonl")
    assert [(e.user_id, e.item_id) for e in loaded.events] == [("u1", "i1"), ("u 1", "i 1")]
    assert loaded.report.malformed == Counter({"empty_field": 3})
    taobao = tmp_path / "taobao.csv"
    taobao.write_text(f"1,100,7,pv,{TS_S}\n  ,101,7,pv,{TS_S}\n1, ,7,pv,{TS_S}\n")
    assert load_events(taobao, "taobao").report.malformed == Counter({"empty_field": 2})
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"SessionId\tItemId\tTime\ns1\t10\t{TS_S}\n \t11\t{TS_S}\ns1\t \t{TS_S}\n")
    assert load_events(tsv, "gru4rec").report.malformed == Counter({"empty_field": 2})


# --- 6. side files ------------------------------------------------------------------------------


def diginetica_views(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    views = directory / "views.csv"
    views.write_text(f"{DIGINETICA_HEADER}1;NA;10;0;2016-05-09\n1;NA;11;5;2016-05-09\n")
    return views


def test_diginetica_categories_file_is_read_when_intact(tmp_path: Path) -> None:
    views = diginetica_views(tmp_path)
    (tmp_path / "product-categories.csv").write_text("itemId;categoryId\n10;c1\n11;c2\n")
    assert load_events(views, "diginetica").categories == {"10": "c1", "11": "c2"}


def assert_warned_no_categories(caplog: pytest.LogCaptureFixture, side_file: Path) -> None:
    """A WARNING named `side_file` and said the load goes on without item categories."""
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(side_file) in m and "no item categories" in m for m in warnings), warnings


@pytest.mark.parametrize("broken", ["bad header", "directory"])
def test_broken_categories_file_beside_the_views_is_a_warning(
    tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    views = diginetica_views(tmp_path)
    side = tmp_path / "product-categories.csv"
    if broken == "directory":
        side.mkdir()
    else:
        side.write_text("foo;bar\n10;c1\n")
    with caplog.at_level(logging.WARNING):
        loaded = load_events(views, "diginetica")
    assert [e.item_id for e in loaded.events] == ["10", "11"]
    assert loaded.categories == {}
    assert_warned_no_categories(caplog, side)


@pytest.mark.parametrize("broken", ["not json", "directory"])
def test_broken_catalog_sidecar_is_a_warning(
    tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = [make_event("u1", EventType.CLICK, TS_S * 1000, item_id="i1")]
    path = tmp_path / "gen.jsonl"
    write_jsonl(events, path)
    sidecar = tmp_path / "gen.items.json"
    if broken == "directory":
        sidecar.mkdir()
    else:
        sidecar.write_text('[{"item_id": "i1"')
    with caplog.at_level(logging.WARNING):
        loaded = load_events(path, "jsonl")
    assert loaded.events == events and loaded.categories == {}
    assert_warned_no_categories(caplog, sidecar)


def test_broken_purchases_file_passed_explicitly_is_an_error(tmp_path: Path) -> None:
    """--purchases names the file, so a broken one is the user's input at fault, not optional side data."""
    views = diginetica_views(tmp_path)
    purchases = tmp_path / "purchases.csv"
    purchases.write_text("foo;bar\n1;2\n")
    with pytest.raises(ValueError, match=re.escape(str(purchases)) + ".*lacks column"):
        load_events(views, "diginetica", purchases=purchases)

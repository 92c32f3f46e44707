"""Hostile records, each with the rejection reason the schema must give it (robustness tests, bench).

Covers what a misbehaving or malicious producer sends: random bytes, truncated and deeply nested
JSON, wrong types, NaN and huge numbers, negative and far-future timestamps, oversize payloads
and queries, unknown event types, empty and 10 KB ids, and non-UTF-8 text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson

from behavior_stream.schema.events import MAX_RECORD_BYTES, Reason

TS = 1_511_544_070_000


def _event(**fields: object) -> bytes:
    base: dict[str, object] = {"user_id": "hostile", "type": "click", "item_id": "i1", "ts": TS}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def _random_bytes(rng: random.Random) -> bytes:
    return b"\xff" + rng.randbytes(rng.randint(1, 200))  # 0xff never starts valid UTF-8


def _truncated(rng: random.Random) -> bytes:
    whole = _event(query=None, session_id="s1")
    return whole[: rng.randint(1, len(whole) - 1)]


def _nested(rng: random.Random, low: int = 50, high: int = 1000) -> bytes:
    depth = rng.randint(low, high)
    return b"[" * depth + b"]" * depth


def _nested_field(rng: random.Random) -> bytes:
    depth = rng.randint(10, 200)
    return b'{"user_id": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b', "type": "click", "ts": 1}'


# Each kind: (reason the schema must give, builder). Builders take a seeded Random.
KINDS: dict[str, tuple[Reason, Callable[[random.Random], bytes]]] = {
    "random_bytes": (Reason.NOT_UTF8, _random_bytes),
    "non_utf8_text": (Reason.NOT_UTF8, lambda r: _event()[:-2] + b'"\xc3\x28"}'),
    "truncated_json": (Reason.NOT_JSON, _truncated),
    "nan": (Reason.NOT_JSON, lambda r: _event()[:-1] + b', "x": NaN}'),
    "infinite_number": (Reason.NOT_JSON, lambda r: _event(ts=...)[:-1] + b', "ts": 1e400}'),
    "deeply_nested_array": (Reason.NOT_OBJECT, _nested),
    "too_deep_array": (Reason.NOT_JSON, lambda r: _nested(r, 1100, 5000)),  # past the decoder's limit
    "nested_object_id": (Reason.WRONG_TYPE, _nested_field),
    "huge_number_ts": (Reason.BAD_TIMESTAMP, lambda r: _event(ts=...)[:-1] + b', "ts": 1' + b"0" * 40 + b"}"),
    "string_ts": (Reason.WRONG_TYPE, lambda r: _event(ts="yesterday")),
    "bool_ts": (Reason.WRONG_TYPE, lambda r: _event(ts=True)),
    "int_user": (Reason.WRONG_TYPE, lambda r: _event(user_id=r.randint(0, 10**6))),
    "negative_ts": (Reason.BAD_TIMESTAMP, lambda r: _event(ts=-r.randint(1, 10**12))),
    "far_future_ts": (Reason.BAD_TIMESTAMP, lambda r: _event(ts=r.randint(5 * 10**12, 9 * 10**18))),
    "seconds_ts": (Reason.BAD_TIMESTAMP, lambda r: _event(ts=TS // 1000)),
    "oversize_payload": (
        Reason.OVERSIZE,
        lambda r: _event(pad="x" * (MAX_RECORD_BYTES + r.randint(1, 5000))),
    ),
    "oversize_query": (Reason.FIELD_TOO_LONG, lambda r: _event(type="search", item_id=None, query="q" * 600)),
    "unknown_type": (Reason.UNKNOWN_TYPE, lambda r: _event(type=r.choice(["view", "buy", "CLICK", ""]))),
    "empty_user": (Reason.EMPTY_FIELD, lambda r: _event(user_id="")),
    "huge_id": (Reason.FIELD_TOO_LONG, lambda r: _event(item_id="i" * 10_000)),
    "missing_user": (Reason.MISSING_FIELD, lambda r: _event(user_id=...)),
    "search_without_query": (Reason.MISSING_FIELD, lambda r: _event(type="search", item_id=None)),
    "json_array": (Reason.NOT_OBJECT, lambda r: orjson.dumps([1, 2, 3])),
}


def hostile_records(n: int, seed: int = 0) -> list[tuple[str, Reason, bytes]]:
    """`n` hostile records cycling through every kind: (kind, expected reason, bytes)."""
    rng = random.Random(seed)
    names = sorted(KINDS)
    out = []
    for i in range(n):
        kind = names[i % len(names)]
        reason, build = KINDS[kind]
        out.append((kind, reason, build(rng)))
    return out

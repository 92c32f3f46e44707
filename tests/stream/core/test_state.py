"""The user-state codec: exact round trip, a size bound that holds in the worst case, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from behavior_stream.nn.checkpoint import save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import EVENT_TYPES, make_event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.process import MAX_EXCLUDED, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.state import (
    SESSION_KEY_BYTES,
    StateCodecError,
    UserState,
    decode_state,
    encode_state,
    max_state_bytes,
    session_key,
    user_key,
    user_of_key,
)
from tests.corekit import core_context


def sample_state(hidden: int = 64) -> UserState:
    rng = np.random.default_rng(0)
    return UserState(
        model_tag=123456789,
        events_seen=42,
        last_offset=99,
        last_offset_repart=-1,
        last_ts=1_700_000_000_000,
        last_seen_ms=1_700_000_000_500,
        session_start=1_699_999_000_000,
        session_id="u1@1699999000000",
        session_counts=[5, 1, 2, 0, 1],
        recent_ids=[1, 2, 3, 4_000_000_000],
        carted=[7, 8],
        purchased=[9],
        history=np.array([-1] * 6 + list(range(10)), np.int32),
        history_types=np.arange(16, dtype=np.uint8) % 5,
        hidden=rng.standard_normal(hidden).astype(np.float32),
    )


def test_round_trip_is_exact() -> None:
    st = sample_state()
    back = decode_state(encode_state(st))
    for name in UserState.__slots__:
        a, b = getattr(st, name), getattr(back, name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, name


def full_state(hidden_floats: int, window: int, n_ids: int, session_id: str) -> UserState:
    """Every capped part at its cap."""
    st = sample_state(hidden_floats)
    st.session_id = session_id
    st.recent_ids = list(range(n_ids))
    st.carted = list(range(MAX_EXCLUDED))
    st.purchased = list(range(MAX_EXCLUDED))
    st.history = np.arange(window, dtype=np.int32)
    st.history_types = np.arange(window, dtype=np.uint8) % 5
    return st


def test_the_documented_bound_at_the_defaults() -> None:
    # GRU hidden 64, window 32, 8 recent ids, 8 carted, 8 purchased: the README's figure.
    assert max_state_bytes(64, 32, 8, MAX_EXCLUDED) == 547


@pytest.mark.parametrize("session_id", ["", "s1", "x" * SESSION_KEY_BYTES, "y" * 200, "\u00e9" * 150])
@pytest.mark.parametrize(("hidden_floats", "window", "n_ids"), [(64, 32, 8), (128, 32, 8), (64, 7, 64)])
def test_a_full_state_is_exactly_the_bound(
    session_id: str, hidden_floats: int, window: int, n_ids: int
) -> None:
    st = full_state(hidden_floats, window, n_ids, session_id)
    size = len(encode_state(st))
    bound = max_state_bytes(hidden_floats, window, n_ids, MAX_EXCLUDED)
    assert size <= bound
    if len(session_id.encode()) >= SESSION_KEY_BYTES:
        assert size == bound  # the bound is tight: a full state reaches it
    assert decode_state(encode_state(st)).session_id == session_key(session_id)


def test_long_session_ids_are_kept_as_distinct_digests() -> None:
    a, b = session_key("a" * 300), session_key("a" * 299 + "b")
    assert a != b and a.startswith("#") and len(a.encode()) == SESSION_KEY_BYTES
    assert session_key("short") == "short"
    assert session_key("a" * 300) == a  # stable across calls and processes


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_states_written_by_the_core_never_exceed_the_bound(tmp_path: Path, cell: str) -> None:
    """The worst case through the real code path: a default-size model, long and changing session
    ids, more distinct carts and purchases than are kept, a history longer than the window."""
    torch.manual_seed(0)
    vocab = ItemVocab(tuple(f"i{n}" for n in range(300)), n_oov_buckets=8)
    config = ModelConfig(cell=cell)  # type: ignore[arg-type]
    path = tmp_path / "m.pt"
    save_checkpoint(path, SequenceModel(config, vocab.n_items, vocab.n_inputs), vocab, {})
    engine = ModelEngine.from_checkpoint(path)
    ctx = core_context(engine, input_topic="in", repartition_topic="re", top_k=5)
    kinds = [t for t in EVENT_TYPES if t != "search"]
    events = [
        make_event(
            "u1",
            kinds[n % len(kinds)],
            item_id=f"i{n}",
            ts=1_700_000_000_000 + 60_000 * n,
            session_id=f"{'s' * 200}-{n // 10}",
        )
        for n in range(120)
    ]
    records = [InputRecord("in", 0, n, b"u1", e.to_json(), 0.0) for n, e in enumerate(events)]
    for start in range(0, len(records), 7):
        process_batch(records[start : start + 7], ctx)
    value = ctx.store[user_key("u1")]
    floats = config.hidden_size * config.num_layers * (2 if cell == "lstm" else 1)
    bound = max_state_bytes(floats, config.repeat_window, ctx.recent_ids, MAX_EXCLUDED)
    assert len(value) == bound
    st = decode_state(value)
    assert st.events_seen == len(events)
    assert len(st.carted) == len(st.purchased) == MAX_EXCLUDED
    # A long id is stored as its digest, and still tells sessions apart: the last session began
    # at event 110 (ids change every 10 events), not at the last batch's first event.
    assert st.session_id == session_key(events[-1].session_id or "")
    assert st.session_start == events[110].ts


@pytest.mark.parametrize("data", [b"", b"\x02" + b"\x00" * 80, encode_state(sample_state())[:-3]])
def test_bad_values_raise_codec_error(data: bytes) -> None:
    with pytest.raises(StateCodecError):
        decode_state(data)


def test_user_keys() -> None:
    assert user_of_key(user_key("ü-1")) == "ü-1"
    assert user_of_key(b"w:watermark") is None


def assert_same(a: UserState, b: UserState) -> None:
    for name in UserState.__slots__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype, name
        else:
            assert x == y, name


def test_wide_item_indices_and_odd_windows_round_trip() -> None:
    st = sample_state()
    st.history = np.array([-1, 0, (1 << 24) - 2, (1 << 24) - 1, 2**31 - 2], np.int32)  # needs 4 bytes
    st.history_types = np.array([4, 3, 2, 1, 0], np.uint8)
    wide = encode_state(st)
    assert_same(decode_state(wide), st)
    st.history, st.history_types = st.history[:3], st.history_types[:3]  # fits 3 bytes, odd length
    narrow = encode_state(st)
    assert_same(decode_state(narrow), st)
    assert len(wide) - len(narrow) == 2 * 4 + 3 * 1 + 1  # two items dropped, one byte per item saved


def encode_v1(st: UserState) -> bytes:
    """The previous codec (4-byte items, one byte per type), written out independently."""
    from behavior_stream.stream.core.state import _HEADER_V1

    sid = st.session_id.encode()
    header = _HEADER_V1.pack(
        1, st.model_tag, st.events_seen, st.last_offset, st.last_offset_repart, st.last_ts,
        st.last_seen_ms, st.session_start, *st.session_counts, len(st.recent_ids), len(st.carted),
        len(st.purchased), len(st.history), len(st.hidden), len(sid),
    )  # fmt: skip
    return b"".join(
        [
            header,
            np.asarray(st.recent_ids, "<u4").tobytes(),
            np.asarray(st.carted, "<i4").tobytes(),
            np.asarray(st.purchased, "<i4").tobytes(),
            np.asarray(st.history, "<i4").tobytes(),
            np.asarray(st.history_types, "u1").tobytes(),
            np.asarray(st.hidden, "<f4").tobytes(),
            sid,
        ]
    )


def test_states_written_by_the_previous_codec_still_decode() -> None:
    st = sample_state()
    old = encode_v1(st)
    assert_same(decode_state(old), st)
    assert len(encode_state(st)) < len(old)

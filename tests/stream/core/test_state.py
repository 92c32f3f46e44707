"""The user-state codec: exact round trip, compact size, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from behavior_stream.stream.core.state import (
    StateCodecError,
    UserState,
    decode_state,
    encode_state,
    user_key,
    user_of_key,
)


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


def test_state_fits_in_512_bytes_at_hidden_64() -> None:
    assert len(encode_state(sample_state(64))) <= 512


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

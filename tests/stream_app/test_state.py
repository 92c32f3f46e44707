"""The user-state codec: exact round trip, compact size, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.state import StateCodecError, UserState, decode_state, encode_state, user_key, user_of_key


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

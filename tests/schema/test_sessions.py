"""The session rule, by hand, and every place that splits sessions agreeing with it on one user."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.baselines import SessionKNN
from behavior_stream.evaluation.ranking import next_item_targets
from behavior_stream.nn.checkpoint import save_checkpoint
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import encode_events, encode_sequences, gap_features
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.schema.sessions import (
    NO_SESSION,
    SESSION_GAP_MS,
    SESSION_KEY_BYTES,
    is_new_session,
    session_boundary,
    session_code,
    session_key,
    session_offsets,
)
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states
from behavior_stream.stream.core.process import StreamContext, process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.stream.core.state import UserState, decode_state, encode_state, user_key
from tests.corekit import core_context

T0 = 1_700_000_000_000
MIN = 60_000
GAP = SESSION_GAP_MS


def ev(ts: int, session: str | None = None, item: str = "i0", user: str = "u") -> Event:
    return make_event(user, EventType.CLICK, ts, item_id=item, session_id=session)


def test_first_event_opens_a_session() -> None:
    assert is_new_session(None, ev(T0))
    assert is_new_session(None, ev(T0, "s1"))
    assert session_boundary(None, None, T0, None, GAP)


@pytest.mark.parametrize(
    ("gap", "new"), [(GAP - 1, False), (GAP, False), (GAP + 1, True), (0, False), (-5 * MIN, False)]
)
def test_gap_just_under_at_and_over_the_limit(gap: int, new: bool) -> None:
    # No ids (the Taobao case) and the same id on both: only the gap decides; out of order never splits.
    assert is_new_session(ev(T0), ev(T0 + gap)) is new
    assert is_new_session(ev(T0, "s"), ev(T0 + gap, "s")) is new
    assert is_new_session(ev(T0), ev(T0 + gap), gap_ms=gap + 1) is False


def test_id_change_opens_a_session_without_a_gap() -> None:
    assert is_new_session(ev(T0, "s1"), ev(T0, "s2"))
    assert is_new_session(ev(T0, "s1"), ev(T0 + MIN, "s2"))
    assert not is_new_session(ev(T0, "s1"), ev(T0 + MIN, "s1"))


def test_one_id_missing_leaves_it_to_the_gap() -> None:
    assert not is_new_session(ev(T0, "s1"), ev(T0 + MIN))
    assert not is_new_session(ev(T0), ev(T0 + MIN, "s1"))
    assert is_new_session(ev(T0), ev(T0 + GAP + 1, "s1"))
    # The stream state stores "" for "no id": the same as None.
    assert not session_boundary(T0, "", T0 + MIN, "s1", GAP)


def test_both_ids_missing_leaves_it_to_the_gap() -> None:
    assert not is_new_session(ev(T0), ev(T0 + 29 * MIN))
    assert is_new_session(ev(T0), ev(T0 + 31 * MIN))


def test_session_offsets_count_events_since_the_session_start() -> None:
    events = [ev(T0, "a"), ev(T0 + MIN, "a"), ev(T0 + 2 * MIN, "b"), ev(T0 + 2 * MIN + GAP + 1, "b")]
    assert session_offsets(events) == [0, 1, 0, 0]
    assert session_offsets(events, gap_ms=2 * GAP) == [0, 1, 0, 1]
    assert session_offsets([]) == []


def test_session_keys_and_codes() -> None:
    long_a, long_b = "x" * 40 + "a", "x" * 40 + "b"
    assert session_key(None) == session_key("") == "" and session_code(None) == session_code("") == NO_SESSION
    assert session_key("s1") == "s1" and len(session_key(long_a).encode()) == SESSION_KEY_BYTES
    assert session_key(long_a) != session_key(long_b) and session_key(session_key(long_a)) == session_key(
        long_a
    )
    # A long id compares equal to its stored digest, so the stream sees no change across batches.
    assert not session_boundary(T0, session_key(long_a), T0 + MIN, long_a, GAP)
    assert session_code(long_a) == session_code(session_key(long_a)) != session_code(long_b)
    assert all(0 < session_code(s) < 2**62 for s in ("s1", long_a, "é" * 20))
    # The stream state stores exactly this key, so a comparison after a round trip agrees.
    for sid in ("", "s1", "x" * 16, "x" * 17, long_a, "é" * 8, "é" * 9):
        assert decode_state(encode_state(UserState(session_id=sid))).session_id == session_key(sid)


def test_model_flag_is_the_rule_on_random_pairs() -> None:
    rng = random.Random(0)
    ids = [None, "s1", "s2", "x" * 30 + "1", "x" * 30 + "2"]
    pairs = [
        (ev(T0, rng.choice(ids)), ev(T0 + rng.choice([-MIN, 0, MIN, GAP, GAP + 1, 3 * GAP]), rng.choice(ids)))
        for _ in range(300)
    ]
    first = [rng.random() < 0.1 for _ in pairs]
    config = ModelConfig()
    _, flag = gap_features(
        torch.tensor([b.ts for _, b in pairs]),
        torch.tensor([-1 if f else a.ts for f, (a, _) in zip(first, pairs, strict=True)]),
        torch.tensor([session_code(b.session_id) for _, b in pairs]),
        torch.tensor(
            [NO_SESSION if f else session_code(a.session_id) for f, (a, _) in zip(first, pairs, strict=True)]
        ),
        config,
    )
    expected = [
        is_new_session(None if f else a, b, config.session_gap_ms)
        for f, (a, b) in zip(first, pairs, strict=True)
    ]
    assert flag.bool().tolist() == expected


# One user: id changes with and without gaps, missing ids, long ids (stored as digests), a gap at
# exactly the limit. Each event's item is distinct, so a session's item set names its events.
LONG_A, LONG_B = "L" * 40 + "a", "L" * 40 + "b"
STEPS: list[tuple[int, str | None, int]] = [  # (gap since previous in ms, session id, expected offset)
    (0, "s1", 0),  # first event
    (MIN, "s1", 1),
    (MIN, "s2", 0),  # id change, no gap
    (MIN, None, 1),  # one id missing
    (MIN, "s3", 2),  # previous id missing: continues
    (GAP + MIN, "s3", 0),  # same id, gap over the limit
    (MIN, LONG_A, 0),
    (29 * MIN, LONG_A, 1),
    (MIN, LONG_B, 0),  # long ids that differ
    (40 * MIN, None, 0),  # gap, no ids
    (MIN, None, 1),
    (GAP, "s4", 2),  # exactly the limit is not over it
    (MIN, "s4", 3),
    (-MIN // 2, "s4", 4),  # out of order (within the stream's grace)
    (MIN, "s5", 0),
]


def user_events() -> list[Event]:
    events, ts = [], T0
    for n, (gap, sid, _) in enumerate(STEPS):
        ts += gap
        events.append(ev(ts, sid, item=f"i{n}"))
    return events


def stream_context(engine: ModelEngine) -> StreamContext:
    return core_context(engine, input_topic="in", repartition_topic="re", top_k=5)


def records(events: list[Event]) -> list[InputRecord]:
    return [InputRecord("in", 0, n, e.user_id.encode(), e.to_json(), 0.0) for n, e in enumerate(events)]


def test_model_stream_baselines_and_breakdown_split_sessions_alike(tmp_path: Path) -> None:
    events = user_events()
    expected = [offset for _, _, offset in STEPS]
    assert session_offsets(events) == expected
    opens = [o == 0 for o in expected]
    vocab = ItemVocab(tuple(e.item_id or "" for e in events), n_oov_buckets=2)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=8, item_dim=8, type_dim=2, query_dim=2, gap_dim=2, repeat_window=4)
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs).eval()

    # The model's input flag, as the full-sequence forward builds it ...
    batch = encode_sequences([events], vocab, config)
    prev_ts = torch.cat([torch.tensor([[-1]]), batch.ts[:, :-1]], 1)
    prev_codes = torch.cat([torch.tensor([[NO_SESSION]]), batch.sessions[:, :-1]], 1)
    _, flag = gap_features(batch.ts, prev_ts, batch.sessions, prev_codes, config)
    assert flag[0].bool().tolist() == opens
    # ... and the incremental step reaches the same state from the same events.
    with torch.inference_mode():
        state = model.initial_state(1)
        for e in events:
            state = model.step(state, encode_events([e], vocab, config))
        out = model(batch, return_state=True)
    assert out.state is not None
    torch.testing.assert_close(state.h, out.state.h, atol=1e-5, rtol=0)
    assert torch.equal(state.last_session, out.state.last_session)

    # The stream's session window, one event per batch (its state through the codec each time):
    # the events counted in the current session after each event give its offset.
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, vocab, {})
    engine = ModelEngine.from_checkpoint(path)
    ctx = stream_context(engine)
    stream_offsets, labels = [], []
    for rec in records(events):
        process_batch([rec], ctx)
        st = decode_state(ctx.store[user_key("u")])
        stream_offsets.append(sum(st.session_counts) - 1)
        labels.append(st.session_start)
    assert stream_offsets == expected
    assert [start == e.ts for start, e in zip(labels, events, strict=True)] == opens
    # In batches, the model's forward from stored states equals the offline one-event replay.
    batched = stream_context(engine)
    recs = records(events)
    for start in range(0, len(recs), 4):
        process_batch(recs[start : start + 4], batched)
    got = decode_state(batched.store[user_key("u")])
    offline = replay_states(events, engine)["u"]
    np.testing.assert_allclose(got.hidden, offline.hidden, atol=1e-5)
    assert got.session_id == offline.session_id == session_key(events[-1].session_id)

    # The baselines' sessions: SKNN's training sessions, as item sets.
    knn = SessionKNN(k=1, sample_size=1).fit(events, vocab)
    starts = sorted(int(knn._sessions[r].indices.min()) for r in range(knn._sessions.shape[0]))
    assert starts == [i for i, o in enumerate(opens) if o]

    # The evaluation breakdown: events of the session before each target, with the model's gap.
    targets = next_item_targets([EvalSequence("u", (), tuple(events))], vocab, config.session_gap_ms)
    assert targets.session_len.tolist() == expected[1:]

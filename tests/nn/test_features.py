"""Tests for event encoding: catalog/OOV/no-item rows, query bags, gap buckets and padding."""

from __future__ import annotations

import torch

from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import (
    collate,
    encode_arrays,
    encode_events,
    encode_sequences,
    gap_features,
    query_tokens,
)
from behavior_stream.schema.events import TYPE_INDEX, EventType, make_event
from tests.seqkit import T0, sequences, tiny_vocab


def test_item_rows_for_catalog_oov_and_search() -> None:
    vocab = tiny_vocab()
    events = [
        make_event("u", EventType.CLICK, T0, item_id="item3"),
        make_event("u", EventType.PURCHASE, T0 + 1, item_id="item25"),
        make_event("u", EventType.SEARCH, T0 + 2, query="Red shoes"),
    ]
    batch = encode_events(events, vocab, ModelConfig())
    assert batch.item_inputs.tolist()[0] == 3 and batch.catalog.tolist() == [3, -1, -1]
    assert vocab.n_items <= int(batch.item_inputs[1]) < vocab.no_item
    assert int(batch.item_inputs[2]) == vocab.no_item
    assert batch.types.tolist() == [TYPE_INDEX[e.type] for e in events]
    # Only the search has a bag: the other offsets point at the same (empty) position.
    assert batch.query_offsets.tolist() == [0, 0, 0] and len(batch.query_ids) > 0
    assert batch.ts.tolist() == [T0, T0 + 1, T0 + 2] and len(batch) == 3


def test_query_tokens_are_stable_case_insensitive_and_share_ngrams() -> None:
    a = query_tokens("Red Shoes", 4096, 3)
    assert a == query_tokens("red shoes", 4096, 3)
    assert all(0 <= t < 4096 for t in a)
    # A misspelling still shares most character trigrams with the clean word.
    assert len(set(query_tokens("shoes", 4096, 3)) & set(query_tokens("shoess", 4096, 3))) >= 4
    assert query_tokens("   ", 4096, 3) == ()


def test_gap_buckets_and_session_flag() -> None:
    config = ModelConfig(n_gap_buckets=10, session_gap_ms=30 * 60_000)
    prev = torch.tensor([-1, T0, T0, T0, T0, T0])
    ts = torch.tensor([T0, T0, T0 + 1_000, T0 + 31 * 60_000, T0 + 10**12, T0 - 5_000])
    no_ids = torch.zeros_like(ts)
    bucket, new_session = gap_features(ts, prev, no_ids, no_ids, config)
    assert bucket.tolist()[:3] == [0, 1, 2]  # first event, same instant, 1 s
    assert int(bucket[4]) == config.n_gap_buckets - 1  # very long gaps share the last bucket
    assert int(bucket[5]) == 1  # out of order counts as simultaneous
    assert new_session.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    # Session codes: a change opens a session only when both events carry one (0 = none).
    codes = torch.tensor([7, 7, 8, 0, 8, 9])
    prev_codes = torch.tensor([0, 7, 7, 7, 0, 0])
    _, by_id = gap_features(ts, prev, codes, prev_codes, config)
    assert by_id.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_padding_and_bags_of_a_sequence_batch() -> None:
    vocab, config = tiny_vocab(), ModelConfig()
    seqs = sequences((5, 2))
    batch = encode_sequences(seqs, vocab, config)
    assert batch.item_inputs.shape == (2, 5) and batch.lengths.tolist() == [5, 2]
    assert batch.catalog[1, 2:].tolist() == [-1, -1, -1]
    assert batch.ts[1, 2:].tolist() == [seqs[1][-1].ts] * 3
    assert len(batch.query_offsets) == 10
    # Each event's bag in the padded batch is exactly its own query's tokens.
    flat = [e for s in seqs for e in (*s, *[None] * (5 - len(s)))]
    ends = [*batch.query_offsets.tolist()[1:], len(batch.query_ids)]
    for event, start, end in zip(flat, batch.query_offsets.tolist(), ends, strict=True):
        expected = (
            query_tokens(event.query, config.query_buckets, config.query_ngram)
            if event and event.query
            else ()
        )
        assert tuple(batch.query_ids[start:end].tolist()) == expected


def test_collate_slices() -> None:
    vocab, config = tiny_vocab(), ModelConfig()
    (seq,) = sequences((8,))
    enc = encode_arrays(seq, vocab, config)
    batch = collate([(enc, 3, 6)])
    assert batch.ts[0].tolist() == [e.ts for e in seq[3:6]]

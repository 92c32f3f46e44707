"""Tests for event encoding: catalog/OOV/no-item rows, query bags, gap buckets and padding."""

from __future__ import annotations

import pytest
import torch

from behavior_stream.nn.categories import FIRST_CATEGORY, NO_CATEGORY, UNKNOWN_CATEGORY, CategoryVocab
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.features import (
    collate,
    encode_arrays,
    encode_events,
    encode_sequences,
    gap_features,
    query_tokens,
)
from behavior_stream.nn.network import SequenceModel
from behavior_stream.nn.state import ModelState
from behavior_stream.schema.events import TYPE_INDEX, EventType, make_event
from tests.seqkit import CATALOG, T0, sequences, small_config, tiny_vocab


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


def test_flat_sequence_encoding_equals_collating_each_sequence() -> None:
    # encode_sequences encodes all events once and scatters them; the general path encodes each
    # sequence and collates the slices. Every array of the batch must be the same.
    cats = CategoryVocab.build({"item1": "a", "item2": "b", "item5": "a"}, ["item1", "item2", "item5"])
    vocab, config = tiny_vocab(), ModelConfig()
    for seed in range(5):
        seqs = sequences((7, 1, 12, 3, 1), seed=seed)
        fast = encode_sequences(seqs, vocab, config, cats)
        slow = collate([(enc, 0, len(enc)) for enc in (encode_arrays(s, vocab, config, cats) for s in seqs)])
        for name in ("item_inputs", "catalog", "types", "query_ids", "query_offsets", "ts", "sessions",
                     "categories", "lengths"):  # fmt: skip
            assert torch.equal(getattr(fast, name), getattr(slow, name)), (seed, name)


def test_cpu_gap_features_equal_the_tensor_ops() -> None:
    # The NumPy path (CPU tensors) against the same rule in torch ops, on gaps around every bucket
    # edge (powers of two seconds), negative gaps, first events and session-code changes.
    config = ModelConfig(n_gap_buckets=12, session_gap_ms=30 * 60_000)
    edges = [0, 1, 999, 1_000, 1_001] + [int(1000 * (2**k - 1)) + d for k in range(1, 14) for d in (-1, 0, 1)]
    gaps = torch.tensor([*edges, -5_000, 30 * 60_000, 30 * 60_000 + 1])
    ts = T0 + gaps
    prev = torch.full_like(ts, T0)
    prev[::7] = -1  # some first events
    codes = torch.arange(len(ts)) % 3
    prev_codes = torch.arange(len(ts)) % 2
    bucket, new_session = gap_features(ts, prev, codes, prev_codes, config)
    first = prev < 0
    gap_s = (ts - prev).clamp(min=0).to(torch.float64) / 1000.0
    expected_bucket = torch.where(
        first, 0, 1 + torch.floor(torch.log2(1.0 + gap_s)).long().clamp(max=config.n_gap_buckets - 2)
    )
    changed = (codes != 0) & (prev_codes != 0) & (codes != prev_codes)
    expected_new = first | ((ts - prev).clamp(min=0) > config.session_gap_ms) | changed
    assert bucket.tolist() == expected_bucket.tolist()
    assert new_session.tolist() == expected_new.float().tolist()
    assert len(set(bucket.tolist())) >= 10  # the edges really span the buckets


SIDE_DATA = {"item1": "shoes", "item2": "hats", "item3": "shoes", "item25": "hats", "item26": "socks"}


def test_category_rows_come_from_the_catalog_map_even_for_new_items() -> None:
    # Trained on item1..item3: shoes (2 items) and hats get rows, most frequent first.
    cats = CategoryVocab.build(SIDE_DATA, ["item1", "item2", "item3", None])
    assert cats.names == ("shoes", "hats") and cats.n_rows == FIRST_CATEGORY + 2
    vocab = tiny_vocab()
    events = [
        make_event("u", EventType.CLICK, T0, item_id="item1"),
        make_event("u", EventType.CLICK, T0 + 1, item_id="item25"),  # OOV item, known category
        make_event("u", EventType.CLICK, T0 + 2, item_id="item26"),  # category never trained
        make_event("u", EventType.CLICK, T0 + 3, item_id="item27"),  # no side data at all
        make_event("u", EventType.SEARCH, T0 + 4, query="hat"),
    ]
    batch = encode_events(events, vocab, ModelConfig(), cats)
    assert batch.catalog.tolist()[1] == -1  # item25 is outside the item vocabulary ...
    shoes, hats = FIRST_CATEGORY, FIRST_CATEGORY + 1
    assert batch.categories.tolist() == [shoes, hats, UNKNOWN_CATEGORY, UNKNOWN_CATEGORY, NO_CATEGORY]
    # Without a category vocabulary every item is unknown (a model without side data ignores them).
    plain = encode_events(events, vocab, ModelConfig())
    assert plain.categories.tolist() == [UNKNOWN_CATEGORY] * 4 + [NO_CATEGORY]


def test_sequence_batches_carry_categories_and_pad_with_no_category() -> None:
    cats = CategoryVocab.build(SIDE_DATA, ["item1", "item2", "item3"])
    seqs = sequences((6, 3))
    batch = encode_sequences(seqs, tiny_vocab(), ModelConfig(), cats)
    for row, seq in enumerate(seqs):
        assert batch.categories[row, : len(seq)].tolist() == [cats.index(e.item_id) for e in seq]
        assert (batch.categories[row, len(seq) :] == NO_CATEGORY).all()
    enc = encode_arrays(seqs[0], tiny_vocab(), ModelConfig(), cats)
    part = collate([(enc, 2, 5)])
    assert part.categories[0].tolist() == enc.categories[2:5].tolist()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_equals_forward_with_categories(cell: str) -> None:
    vocab = tiny_vocab()
    # Side data for every catalog item and some OOV ones, in 3 categories.
    side = {item: f"c{i % 3}" for i, item in enumerate(CATALOG)}
    cats = CategoryVocab.build(side, CATALOG[:20])
    torch.manual_seed(0)
    model = SequenceModel(small_config(cell=cell), vocab.n_items, vocab.n_inputs, cats, vocab.items).eval()
    seqs = sequences((7, 4, 1, 6), seed=3)
    with torch.no_grad():
        out = model(encode_sequences(seqs, vocab, model.config, model.categories), return_state=True)
        state = model.initial_state(len(seqs))
        for t in range(max(map(len, seqs))):
            rows = [i for i, s in enumerate(seqs) if t < len(s)]
            sub = state.select(torch.tensor(rows))
            new = model.step(sub, encode_events([seqs[i][t] for i in rows], vocab, model.config, cats))
            for r, i in enumerate(rows):
                assert (new.h[-1, r] - out.hidden[i, t]).abs().max() <= 1e-5
            idle = [i for i in range(len(seqs)) if i not in rows]
            merged = ModelState.cat([new, state.select(torch.tensor(idle, dtype=torch.int64))])
            state = merged.select(torch.argsort(torch.tensor(rows + idle)))
        # Not vacuous: the same events without their categories give other states.
        blind = model(encode_sequences(seqs, vocab, model.config), return_state=True)
    assert out.state is not None and blind.state is not None
    assert (state.h - out.state.h).abs().max() <= 1e-5
    assert (blind.state.h - out.state.h).abs().max() > 1e-3

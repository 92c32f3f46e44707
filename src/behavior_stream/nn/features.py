"""Event -> tensor encoding for the sequence model: item/type indices, hashed query bags, time gaps,
session ids (as `schema.sessions.session_code`s, for the new-session flag).

The same encoding feeds the incremental `step` (an `EventBatch`, one event per user) and the
full-sequence `forward` (a padded `SequenceBatch`), so both paths see identical inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import TYPE_INDEX, Event
from behavior_stream.schema.sessions import NO_SESSION, session_code
from behavior_stream.schema.vocab import ItemVocab, stable_hash

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65536)
def query_tokens(query: str, buckets: int, ngram: int) -> tuple[int, ...]:
    """Hashed bag of a query: its lower-cased words plus the character n-grams of each `<word>`.

    Character n-grams let misspellings and inflections share buckets with the clean word.
    """
    ids: list[int] = []
    for word in _WORD.findall(query.lower()):
        ids.append(stable_hash("w:" + word) % buckets)
        padded = f"<{word}>"
        for i in range(max(1, len(padded) - ngram + 1)):
            ids.append(stable_hash("c:" + padded[i : i + ngram]) % buckets)
    return tuple(ids)


def gap_features(
    ts: Tensor, prev_ts: Tensor, sessions: Tensor, prev_sessions: Tensor, config: ModelConfig
) -> tuple[Tensor, Tensor]:
    """Log2-second gap bucket (int64) and new-session flag (float) of events after the previous ones.

    `ts`/`sessions` are the events' times and session codes, `prev_ts`/`prev_sessions` those of
    each one's previous event (same shape). `prev_ts` < 0 means no previous event: bucket 0 and
    a new session. Out-of-order events (negative gaps) count as simultaneous. The flag is
    `schema.sessions.is_new_session` with `config.session_gap_ms`, on session codes.
    """
    first = prev_ts < 0
    gap = (ts - prev_ts).clamp(min=0)
    seconds = gap.to(torch.float64) / 1000.0
    bucket = 1 + torch.floor(torch.log2(1.0 + seconds)).to(torch.int64).clamp(max=config.n_gap_buckets - 2)
    bucket = torch.where(first, torch.zeros_like(bucket), bucket)
    # The session rule, vectorized; tests/schema/test_sessions.py checks it against the scalar one.
    id_change = (sessions != NO_SESSION) & (prev_sessions != NO_SESSION) & (sessions != prev_sessions)
    new_session = (first | (gap > config.session_gap_ms) | id_change).to(torch.float32)
    return bucket, new_session


@dataclass(frozen=True)
class EncodedEvents:
    """NumPy encoding of an event list: per-event arrays plus a flat query-token array."""

    item_inputs: np.ndarray  # (n,) int64 input-embedding rows
    catalog: np.ndarray  # (n,) int64 catalog index, -1 when not rankable
    types: np.ndarray  # (n,) int64 TYPE_INDEX
    ts: np.ndarray  # (n,) int64 ms
    sessions: np.ndarray  # (n,) int64 session_code of the session id, 0 = none
    query_ids: np.ndarray  # (sum of bag sizes,) int64
    query_starts: np.ndarray  # (n + 1,) int64 bag boundaries into query_ids

    def __len__(self) -> int:
        return len(self.ts)


def encode_arrays(events: Sequence[Event], vocab: ItemVocab, config: ModelConfig) -> EncodedEvents:
    """Encode events in order (a user's sequence, or one event per user for a step)."""
    n = len(events)
    cat = vocab.index
    catalog = np.fromiter(((-1 if (c := cat(e.item_id)) is None else c) for e in events), np.int64, n)
    bags = [
        query_tokens(e.query, config.query_buckets, config.query_ngram) if e.query else () for e in events
    ]
    sizes = np.fromiter((len(b) for b in bags), np.int64, n)
    return EncodedEvents(
        item_inputs=np.fromiter((vocab.input_index(e.item_id) for e in events), np.int64, n),
        catalog=catalog,
        types=np.fromiter((TYPE_INDEX[e.type] for e in events), np.int64, n),
        ts=np.fromiter((e.ts for e in events), np.int64, n),
        sessions=np.fromiter((session_code(e.session_id) for e in events), np.int64, n),
        query_ids=np.fromiter((t for b in bags for t in b), np.int64, int(sizes.sum())),
        query_starts=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    )


@dataclass(frozen=True)
class EventBatch:
    """One event per row (batch,), the input of `SequenceModel.step`."""

    item_inputs: Tensor  # (batch,) int64
    catalog: Tensor  # (batch,) int64, -1 when the item is not in the catalog
    types: Tensor  # (batch,) int64
    query_ids: Tensor  # (total tokens,) int64
    query_offsets: Tensor  # (batch,) int64 EmbeddingBag offsets; an empty bag embeds as zeros
    ts: Tensor  # (batch,) int64 ms
    sessions: Tensor  # (batch,) int64 session codes, 0 = no session id

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def encode_events(events: Sequence[Event], vocab: ItemVocab, config: ModelConfig) -> EventBatch:
    """Encode one event per row for `SequenceModel.step`."""
    enc = encode_arrays(events, vocab, config)
    return EventBatch(
        item_inputs=torch.from_numpy(enc.item_inputs),
        catalog=torch.from_numpy(enc.catalog),
        types=torch.from_numpy(enc.types),
        query_ids=torch.from_numpy(enc.query_ids),
        query_offsets=torch.from_numpy(enc.query_starts[:-1].copy()),
        ts=torch.from_numpy(enc.ts),
        sessions=torch.from_numpy(enc.sessions),
    )


@dataclass(frozen=True)
class SequenceBatch:
    """Right-padded sequences (batch, time), the input of `SequenceModel.forward`."""

    item_inputs: Tensor  # (batch, time) int64
    catalog: Tensor  # (batch, time) int64, -1 for non-catalog items and padding
    types: Tensor  # (batch, time) int64
    query_ids: Tensor  # (total tokens,) int64
    query_offsets: Tensor  # (batch * time,) int64, row-major bags; padding has empty bags
    ts: Tensor  # (batch, time) int64 ms; padding repeats the last real timestamp
    sessions: Tensor  # (batch, time) int64 session codes, 0 = none; padding repeats the last
    lengths: Tensor  # (batch,) int64, each >= 1


def collate(parts: Sequence[tuple[EncodedEvents, int, int]]) -> SequenceBatch:
    """Pad the slices `enc[start:stop]` of encoded sequences into one batch."""
    if not parts:
        raise ValueError("collate needs at least one sequence")
    lengths = np.array([stop - start for _, start, stop in parts], dtype=np.int64)
    if lengths.min() < 1:
        raise ValueError(f"every sequence slice needs >= 1 event, got lengths {lengths.tolist()}")
    b, t = len(parts), int(lengths.max())
    item_inputs = np.zeros((b, t), np.int64)
    catalog = np.full((b, t), -1, np.int64)
    types = np.zeros((b, t), np.int64)
    ts = np.zeros((b, t), np.int64)
    sessions = np.zeros((b, t), np.int64)
    sizes = np.zeros((b, t), np.int64)
    tokens: list[np.ndarray] = []
    for row, (enc, start, stop) in enumerate(parts):
        n = stop - start
        item_inputs[row, :n] = enc.item_inputs[start:stop]
        catalog[row, :n] = enc.catalog[start:stop]
        types[row, :n] = enc.types[start:stop]
        ts[row, :n] = enc.ts[start:stop]
        ts[row, n:] = enc.ts[stop - 1]
        sessions[row, :n] = enc.sessions[start:stop]
        sessions[row, n:] = enc.sessions[stop - 1]
        sizes[row, :n] = np.diff(enc.query_starts[start : stop + 1])
        tokens.append(enc.query_ids[enc.query_starts[start] : enc.query_starts[stop]])
    flat_sizes = sizes.reshape(-1)
    offsets = np.concatenate([[0], np.cumsum(flat_sizes)[:-1]]).astype(np.int64)
    return SequenceBatch(
        item_inputs=torch.from_numpy(item_inputs),
        catalog=torch.from_numpy(catalog),
        types=torch.from_numpy(types),
        query_ids=torch.from_numpy(np.concatenate(tokens).astype(np.int64)),
        query_offsets=torch.from_numpy(offsets),
        ts=torch.from_numpy(ts),
        sessions=torch.from_numpy(sessions),
        lengths=torch.from_numpy(lengths),
    )


def encode_sequences(
    sequences: Sequence[Sequence[Event]], vocab: ItemVocab, config: ModelConfig
) -> SequenceBatch:
    """Encode and pad whole event sequences (each non-empty) into one batch."""
    encoded = [encode_arrays(seq, vocab, config) for seq in sequences]
    return collate([(enc, 0, len(enc)) for enc in encoded])

"""Event -> tensor encoding for the sequence model: item/type indices, hashed query bags, time gaps,
session ids (as `schema.sessions.session_code`s, for the new-session flag), item categories.

Categories come from side data (a catalog map item -> category, `categories.CategoryVocab`), not from the
event, so an item unknown to the item vocabulary still contributes its category.

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

from behavior_stream.nn.categories import NO_CATEGORY, CategoryVocab, category_indices
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
    if ts.device.type == "cpu" and prev_ts.device.type == "cpu":
        return _gap_features_cpu(ts, prev_ts, sessions, prev_sessions, config)
    first = prev_ts < 0
    gap = (ts - prev_ts).clamp(min=0)
    seconds = gap.to(torch.float64) / 1000.0
    bucket = 1 + torch.floor(torch.log2(1.0 + seconds)).to(torch.int64).clamp(max=config.n_gap_buckets - 2)
    bucket = torch.where(first, torch.zeros_like(bucket), bucket)
    # The session rule, vectorized; tests/schema/test_sessions.py checks it against the scalar one.
    id_change = (sessions != NO_SESSION) & (prev_sessions != NO_SESSION) & (sessions != prev_sessions)
    new_session = (first | (gap > config.session_gap_ms) | id_change).to(torch.float32)
    return bucket, new_session


def _gap_features_cpu(
    ts: Tensor, prev_ts: Tensor, sessions: Tensor, prev_sessions: Tensor, config: ModelConfig
) -> tuple[Tensor, Tensor]:
    """`gap_features` in NumPy: the same values (integer inputs, no gradient) for a fraction of the
    per-op cost of ~20 tiny torch ops, which dominates a streaming step of a few users."""
    t, p = ts.numpy(), prev_ts.numpy()
    first = p < 0
    gap = np.maximum(t - p, 0)  # (same shape as ts) ms, out-of-order = simultaneous
    log_gap = np.floor(np.log2(1.0 + gap / 1000.0)).astype(np.int64)
    bucket = np.where(first, 0, 1 + np.minimum(log_gap, config.n_gap_buckets - 2))
    s, ps = sessions.numpy(), prev_sessions.numpy()
    id_change = (s != NO_SESSION) & (ps != NO_SESSION) & (s != ps)
    new_session = first | (gap > config.session_gap_ms) | id_change
    return torch.from_numpy(bucket.astype(np.int64)), torch.from_numpy(new_session.astype(np.float32))


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
    categories: np.ndarray  # (n,) int64 category rows (`CategoryVocab.index`)

    def __len__(self) -> int:
        return len(self.ts)


def encode_arrays(
    events: Sequence[Event], vocab: ItemVocab, config: ModelConfig, categories: CategoryVocab | None = None
) -> EncodedEvents:
    """Encode events in order (a user's sequence, or one event per user for a step); `categories` is
    the model's category vocabulary (`SequenceModel.categories`), None for a model without one."""
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
        categories=category_indices(events, categories),
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
    categories: Tensor  # (batch,) int64 category rows

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def encode_events(
    events: Sequence[Event], vocab: ItemVocab, config: ModelConfig, categories: CategoryVocab | None = None
) -> EventBatch:
    """Encode one event per row for `SequenceModel.step` (`categories`: see `encode_arrays`)."""
    enc = encode_arrays(events, vocab, config, categories)
    return EventBatch(
        item_inputs=torch.from_numpy(enc.item_inputs),
        catalog=torch.from_numpy(enc.catalog),
        types=torch.from_numpy(enc.types),
        query_ids=torch.from_numpy(enc.query_ids),
        query_offsets=torch.from_numpy(enc.query_starts[:-1].copy()),
        ts=torch.from_numpy(enc.ts),
        sessions=torch.from_numpy(enc.sessions),
        categories=torch.from_numpy(enc.categories),
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
    categories: Tensor  # (batch, time) int64 category rows, NO_CATEGORY for padding
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
    cats = np.full((b, t), NO_CATEGORY, np.int64)
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
        cats[row, :n] = enc.categories[start:stop]
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
        categories=torch.from_numpy(cats),
        lengths=torch.from_numpy(lengths),
    )


def encode_sequences(
    sequences: Sequence[Sequence[Event]],
    vocab: ItemVocab,
    config: ModelConfig,
    categories: CategoryVocab | None = None,
) -> SequenceBatch:
    """Encode and pad whole event sequences (each non-empty) into one batch (`categories`: see
    `encode_arrays`)."""
    # One flat encoding sliced per sequence: the per-call cost of `encode_arrays` (a dozen
    # NumPy conversions) is paid once per batch, not once per user; the arrays are the same.
    enc = encode_arrays([e for seq in sequences for e in seq], vocab, config, categories)
    lengths = np.fromiter((len(seq) for seq in sequences), np.int64, len(sequences))
    if len(lengths) == 0 or lengths.min() < 1:
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return collate([(enc, int(bounds[i]), int(bounds[i + 1])) for i in range(len(lengths))])  # raises
    return _collate_flat(enc, lengths)


def _collate_flat(enc: EncodedEvents, lengths: np.ndarray) -> SequenceBatch:
    """`collate` of consecutive slices of one encoding with these (>= 1) lengths, without a
    per-row loop: the same arrays, scattered by (row, position) at once."""
    b, t = len(lengths), int(lengths.max())
    rows = np.repeat(np.arange(b), lengths)  # (n,) each event's row
    starts = np.cumsum(lengths) - lengths  # (b,) first event of each row
    cols = np.arange(len(enc)) - np.repeat(starts, lengths)  # (n,) its position in the row
    last = starts + lengths - 1  # (b,) each row's last event: what padding repeats

    def padded(values: np.ndarray, fill: int | np.ndarray) -> np.ndarray:
        out = np.empty((b, t), np.int64)  # (batch, time)
        out[:] = fill
        out[rows, cols] = values
        return out

    sizes = padded(np.diff(enc.query_starts), 0).reshape(-1)
    return SequenceBatch(
        item_inputs=torch.from_numpy(padded(enc.item_inputs, 0)),
        catalog=torch.from_numpy(padded(enc.catalog, -1)),
        types=torch.from_numpy(padded(enc.types, 0)),
        query_ids=torch.from_numpy(enc.query_ids.astype(np.int64)),
        query_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)),
        ts=torch.from_numpy(padded(enc.ts, enc.ts[last][:, None])),
        sessions=torch.from_numpy(padded(enc.sessions, enc.sessions[last][:, None])),
        categories=torch.from_numpy(padded(enc.categories, NO_CATEGORY)),
        lengths=torch.from_numpy(lengths.copy()),
    )

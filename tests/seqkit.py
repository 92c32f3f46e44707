"""Small hand-built event sequences for the sequence-model tests: searches, OOV items, session gaps."""

from __future__ import annotations

import random

import torch

from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.schema.vocab import ItemVocab

T0 = 1_700_000_000_000
CATALOG = tuple(f"item{i}" for i in range(30))
QUERIES = ("red running shoes", "Blue hat", "shoe", "winter jacket xl")
# Gaps from near-simultaneous to days, so several cross the 30-minute session boundary.
GAPS_MS = (0, 800, 15_000, 240_000, 45 * 60_000, 26 * 3_600_000, 9 * 86_400_000)


def tiny_vocab() -> ItemVocab:
    """The first 20 catalog items are known; item20..item29 are OOV (hashed buckets)."""
    return ItemVocab(CATALOG[:20], n_oov_buckets=4)


def user_sequence(user: str, n: int, rng: random.Random) -> list[Event]:
    """A user's events: clicks with frequent re-visits, searches, carts, purchases, OOV items."""
    ts = T0 + rng.randrange(1_000_000)
    events: list[Event] = []
    for _ in range(n):
        ts += rng.choice(GAPS_MS)
        kind = rng.choice([*EventType, EventType.CLICK, EventType.CLICK])
        if kind is EventType.SEARCH:
            events.append(make_event(user, kind, ts, query=rng.choice(QUERIES)))
            continue
        seen = [e.item_id for e in events if e.item_id]
        item = rng.choice(seen) if seen and rng.random() < 0.4 else rng.choice(CATALOG)
        events.append(make_event(user, kind, ts, item_id=item))
    return events


def sequences(lengths: tuple[int, ...] = (14, 9, 1, 5), seed: int = 0) -> list[list[Event]]:
    """One sequence per length, users u0, u1, ..."""
    rng = random.Random(seed)
    return [user_sequence(f"u{i}", n, rng) for i, n in enumerate(lengths)]


def small_config(**overrides: object) -> ModelConfig:
    """A model small enough for fast tests, with a short repeat window that fills up."""
    base: dict[str, object] = {
        "hidden_size": 12,
        "item_dim": 8,
        "type_dim": 4,
        "query_dim": 4,
        "gap_dim": 4,
        "query_buckets": 64,
        "repeat_window": 4,
        "repeat_dim": 8,
        "dropout": 0.0,
    }
    return ModelConfig(**{**base, **overrides})  # type: ignore[arg-type]


def small_model(vocab: ItemVocab, seed: int = 0, **overrides: object) -> SequenceModel:
    """A seeded, eval-mode model over `vocab`."""
    torch.manual_seed(seed)
    return SequenceModel(small_config(**overrides), vocab.n_items, vocab.n_inputs).eval()

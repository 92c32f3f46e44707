"""Baselines on small constructed sequences: scores, tie-breaking, sessions and neighbor sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from behavior_stream.data.splits import EvalSequence
from behavior_stream.evaluation.baselines import (
    FirstOrderMarkov,
    MostPopular,
    PurchaseBaseRate,
    SessionKNN,
    item_counts,
    make_baseline,
)
from behavior_stream.evaluation.metrics import conservative_ranks
from behavior_stream.evaluation.scoring import NextItemScorer
from behavior_stream.schema.events import Event, EventType, make_event
from behavior_stream.schema.sessions import session_offsets
from behavior_stream.schema.vocab import ItemVocab

T0 = 1_600_000_000_000
MIN = 60_000


def clicks(
    user: str, items: list[str | None], start: int = T0, gap: int = MIN, session: str | None = None
) -> list[Event]:
    """Click events one `gap` apart; None makes a search event."""
    return [
        make_event(user, EventType.SEARCH, start + i * gap, query="shoes", session_id=session)
        if item is None
        else make_event(user, EventType.CLICK, start + i * gap, item_id=item, session_id=session)
        for i, item in enumerate(items)
    ]


def ranks_after(scorer: NextItemScorer, vocab: ItemVocab, prefix: list[Event]) -> dict[str, int]:
    """Conservative rank of every catalog item as the next item after `prefix`."""
    seq = EvalSequence("u", (), (*prefix, prefix[-1]))
    scores = scorer.score_sequence(seq, [len(prefix)])
    n = vocab.n_items
    ranks = conservative_ranks(np.repeat(scores, n, axis=0), np.arange(n))
    return dict(zip(vocab.items, ranks.tolist(), strict=True))


def test_most_popular_scores_training_counts() -> None:
    train = clicks("a", ["A", "B", "A", "C", "A"])
    vocab = ItemVocab.build(e.item_id for e in train)
    pop = MostPopular().fit(train, vocab)
    seq = EvalSequence("u", (), tuple(clicks("u", ["B", "C", "A"])))
    scores = pop.score_sequence(seq, [1, 2])
    assert scores.shape == (2, vocab.n_items) and scores.dtype == np.float32
    assert scores[0].tolist() == item_counts(train, vocab).tolist() == [3, 1, 1]


def test_markov_ranks_transitions_then_popularity() -> None:
    train = [*clicks("a", ["A", "B", "A", "C"]), *clicks("b", ["A", "B", "D", "D", "D", "D"])]
    vocab = ItemVocab.build(e.item_id for e in train)
    markov = FirstOrderMarkov().fit(train, vocab)
    ranks = ranks_after(markov, vocab, clicks("u", ["A"]))
    # A -> B twice, A -> C once; A and D never follow A, D is more popular than A.
    assert (ranks["B"], ranks["C"], ranks["D"], ranks["A"]) == (1, 2, 3, 4)


def test_markov_breaks_equal_counts_by_popularity() -> None:
    train = [*clicks("a", ["A", "B", "X", "X", "X"]), *clicks("b", ["A", "C", "B", "B"])]
    vocab = ItemVocab.build(e.item_id for e in train)
    ranks = ranks_after(FirstOrderMarkov().fit(train, vocab), vocab, clicks("u", ["A"]))
    # A -> B and A -> C once each; B (3 clicks) is more popular than C (1).
    assert ranks["B"] == 1 and ranks["C"] == 2


def test_markov_skips_search_and_unknown_items() -> None:
    train = clicks("a", ["A", None, "B", "C", "C"])
    vocab = ItemVocab.build(e.item_id for e in train)
    markov = FirstOrderMarkov().fit(train, vocab)
    # The search event between A and B does not break the A -> B transition.
    assert ranks_after(markov, vocab, clicks("u", ["A"]))["B"] == 1
    # The prefix ends with a search and an unseen item: the last catalog item (A) is used.
    assert ranks_after(markov, vocab, clicks("u", ["A", None, "NEW"]))["B"] == 1
    # No catalog item in the prefix: pure popularity (C has 2 clicks).
    assert ranks_after(markov, vocab, clicks("u", ["NEW"]))["C"] == 1


def test_session_offsets_gap_and_session_id() -> None:
    events = [*clicks("a", ["A", "B"]), *clicks("a", ["C", "D"], start=T0 + 2 * 3600_000)]
    assert session_offsets(events) == [0, 1, 0, 1]
    same_time = [
        *clicks("a", ["A", "B"], session="s1"),
        *clicks("a", ["C"], start=T0 + 2 * MIN, session="s2"),
    ]
    assert session_offsets(same_time) == [0, 1, 0]


def test_sknn_scores_cosine_similarity_sums() -> None:
    train = [*clicks("a", ["A", "B"]), *clicks("b", ["A", "C", "D"]), *clicks("c", ["E", "F"])]
    vocab = ItemVocab.build(e.item_id for e in train)
    sknn = SessionKNN(k=10, sample_size=10).fit(train, vocab)
    seq = EvalSequence("u", (), tuple(clicks("u", ["A", "Z"])))
    scores = dict(zip(vocab.items, sknn.score_sequence(seq, [1])[0].tolist(), strict=True))
    # Current session {A}: sim to {A, B} = 1/sqrt(2), to {A, C, D} = 1/sqrt(3), to {E, F} = 0.
    assert scores["B"] == pytest.approx(1 / math.sqrt(2), abs=1e-5)
    assert scores["C"] == pytest.approx(1 / math.sqrt(3), abs=1e-5)
    assert scores["A"] == pytest.approx(1 / math.sqrt(2) + 1 / math.sqrt(3), abs=1e-5)
    assert scores["E"] < 1e-5


def test_sknn_current_session_ends_at_a_long_gap() -> None:
    train = [*clicks("a", ["A", "B"]), *clicks("b", ["C", "D"])]
    vocab = ItemVocab.build(e.item_id for e in train)
    sknn = SessionKNN(k=10, sample_size=10).fit(train, vocab)
    prefix = [*clicks("u", ["A"]), *clicks("u", ["C"], start=T0 + 3600_000)]
    ranks = ranks_after(sknn, vocab, prefix)
    # Only C is in the current session (A is an hour earlier), so D leads and B gets nothing.
    assert ranks["D"] <= 2 and ranks["B"] > ranks["D"]


def test_sknn_training_sessions_split_at_gaps() -> None:
    # A and B are clicked by one user an hour apart: two sessions, so they are not neighbors.
    train = [*clicks("a", ["A"]), *clicks("a", ["B"], start=T0 + 3600_000), *clicks("b", ["C", "B", "C"])]
    vocab = ItemVocab.build(e.item_id for e in train)
    sknn = SessionKNN(k=10, sample_size=10).fit(train, vocab)
    seq = EvalSequence("u", (), tuple(clicks("u", ["A", "A"])))
    scores = dict(zip(vocab.items, sknn.score_sequence(seq, [1])[0].tolist(), strict=True))
    assert scores["A"] == pytest.approx(1.0, abs=1e-5)
    assert scores["B"] < 1e-5


def test_sknn_samples_the_most_recent_sessions() -> None:
    old = clicks("a", ["A", "OLD"])
    new = clicks("b", ["A", "NEW"], start=T0 + 24 * 3600_000)
    vocab = ItemVocab.build(e.item_id for e in (*old, *new))
    sknn = SessionKNN(k=1, sample_size=1).fit([*old, *new], vocab)
    ranks = ranks_after(sknn, vocab, clicks("u", ["A"]))
    assert ranks["NEW"] < ranks["OLD"]


def test_make_baseline_names() -> None:
    assert [make_baseline(n).name for n in ("pop", "markov", "sknn")] == ["pop", "markov", "sknn"]
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("bpr")
    with pytest.raises(ValueError, match="k <= sample_size"):
        SessionKNN(k=10, sample_size=5)


def test_purchase_base_rate() -> None:
    events = [
        *clicks("a", ["A", "B"]),
        make_event("a", EventType.PURCHASE, T0 + 5 * MIN, item_id="B"),
        *clicks("b", ["C", "C"]),
    ]
    base = PurchaseBaseRate().fit(events, ItemVocab.build(e.item_id for e in events))
    # Positions >= 1: a has B, purchase B; b has C -> 1 purchase of 3.
    assert base.rate == pytest.approx(1 / 3)
    seq = EvalSequence("u", (), tuple(events[:3]))
    assert base.purchase_probabilities(seq, [1, 2]).tolist() == pytest.approx([1 / 3, 1 / 3])

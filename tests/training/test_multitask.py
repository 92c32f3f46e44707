"""Tests for the auxiliary labels and losses: hand-computed labels on a known window, no label from
beyond the window, the multi-future loss, and the weights."""

from __future__ import annotations

import math

import pytest
import torch

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.features import encode_arrays
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import TYPE_INDEX, EventType, make_event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.training.batching import TrainBatch, make_batch, make_windows
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.multitask import (
    AuxLabels,
    aux_labels,
    aux_losses,
    future_loss,
    weighted_aux_loss,
)
from tests.seqkit import T0, small_config

C, A, P, S = EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.SEARCH
HOUR = 3_600_000
# (type, item, ms after T0): sessions {0,1,2} (purchase at 2), {3,4} (none, 4 is a search) and
# {5,6} (purchase at 6; the last session, which may go on after the window: its labels are unknown).
# z is outside the item vocabulary but has a category.
EVENTS = [
    (C, "a", 0), (A, "b", 10_000), (P, "b", 20_000),
    (C, "c", 2 * HOUR), (S, None, 2 * HOUR + 5_000),
    (C, "a", 5 * HOUR), (P, "z", 5 * HOUR + 1_000),
]  # fmt: skip
VOCAB = ItemVocab(("a", "b", "c"), n_oov_buckets=2)
CATEGORIES = {"a": "red", "b": "blue", "c": "red", "z": "blue"}


def toy_batch(n_events: int = len(EVENTS), future_k: int = 2) -> tuple[SequenceModel, TrainBatch]:
    """A model with side data and a one-window batch of the first `n_events` of EVENTS."""
    cats = CategoryVocab.build(CATEGORIES, ["a", "b", "c"])
    events = [
        make_event("u", t, T0 + ms, item_id=item) if item else make_event("u", t, T0 + ms, query="shoes")
        for t, item, ms in EVENTS[:n_events]
    ]
    config = small_config(future_k=future_k)
    model = SequenceModel(config, VOCAB.n_items, VOCAB.n_inputs, cats, VOCAB.items)
    enc = encode_arrays(events, VOCAB, config, cats)
    return model, make_batch([enc], make_windows([len(enc)], 200, 0), config)


def labels_of(model: SequenceModel, batch: TrainBatch) -> AuxLabels:
    return aux_labels(batch.sequences, batch.state, batch.purchase_mask, model, model.config.future_k)


def test_labels_match_a_hand_computed_window() -> None:
    model, batch = toy_batch()
    labels = labels_of(model, batch)
    # Positions 0..5 have a next event; the last (6) does not.
    assert labels.counted[0].tolist() == [True] * 6 + [False]
    assert labels.next_type.tolist() == [TYPE_INDEX[t] for t in (A, P, C, S, C, P)]
    gaps = [10, 10, 2 * 3600 - 20, 5, 3 * 3600 - 5, 1]
    assert labels.log_gap.tolist() == pytest.approx([math.log1p(g) for g in gaps], rel=1e-6)
    # The next event's session must end in the window: positions 0..3 (sessions 1 and 2 end there);
    # at 4 and 5 the next event is in the last session, which may continue: no label.
    assert labels.session_mask[0].tolist() == [True] * 4 + [False] * 3
    # 0: {b, b(P)} -> 1; 1: {b(P)} -> 1; 2: the next session {c, search} -> 0; 3: {search} -> 0.
    assert labels.session_purchase.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert labels.session_rest.tolist() == pytest.approx([math.log1p(n) for n in (2, 1, 2, 1)])
    # Next items b, b, c, (search: no category), a, z (outside the vocabulary, category known).
    cats = model.categories
    assert cats is not None
    assert labels.category_mask[0].tolist() == [True, True, True, False, True, True, False]
    assert labels.next_category.tolist() == [cats.index(i) for i in ("b", "b", "c", "a", "z")]
    assert cats.index("z") == cats.index("b") >= 2
    # Next two catalog items (-1: no item, outside the catalog, or past the window).
    assert labels.future.tolist() == [[1, 1], [1, 2], [2, -1], [-1, 0], [0, -1], [-1, -1]]


def test_labels_never_reach_past_the_window() -> None:
    # Cut after event 4: the window cannot know that session {3, 4} ends, so positions whose next
    # event is in it get no session label, and nothing of events 5 and 6 is seen.
    model, batch = toy_batch(n_events=5)
    labels = labels_of(model, batch)
    assert labels.counted[0].tolist() == [True] * 4 + [False]
    assert labels.session_mask[0].tolist() == [True, True, False, False, False]
    assert labels.session_purchase.tolist() == [1.0, 1.0]
    assert labels.future.tolist() == [[1, 1], [1, 2], [2, -1], [-1, -1]]


def test_losses_are_finite_trainable_and_weighted() -> None:
    torch.manual_seed(0)
    model, batch = toy_batch()
    out = model(batch.sequences, batch.state)
    labels = labels_of(model, batch)
    cfg = TrainConfig()
    losses = aux_losses(model, out.hidden, labels, cfg, torch.Generator().manual_seed(0))
    names = {"session_purchase", "next_type", "log_gap", "session_rest", "next_category", "future"}
    assert set(losses) == names
    assert all(bool(torch.isfinite(v)) and v.item() > 0 for v in losses.values())
    total = weighted_aux_loss(losses, cfg)
    assert total is not None
    expected = sum(float(getattr(cfg, f"{k}_weight")) * v.item() for k, v in losses.items())
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert model.heads is not None and model.heads.future_out is not None
    assert model.heads.future_out.weight.grad is not None
    rnn_grad = next(model.rnn.parameters()).grad  # the heads train the recurrent state itself
    assert rnn_grad is not None and float(rnn_grad.abs().sum()) > 0
    # Off: a weight of 0 removes a head's loss exactly.
    off = TrainConfig(future_weight=0.0)
    without = weighted_aux_loss(losses, off)
    assert without is not None
    assert without.item() == pytest.approx(expected - cfg.future_weight * losses["future"].item(), rel=1e-5)


def test_sampled_future_loss_equals_full_when_all_items_are_candidates() -> None:
    torch.manual_seed(0)
    model, _ = toy_batch()
    top = torch.randn(4, model.config.hidden_size)
    targets = torch.tensor([[0, 1], [2, -1], [-1, -1], [1, 1]])
    gen = torch.Generator().manual_seed(0)
    full = future_loss(model, top, targets, TrainConfig(), gen)
    # Every item sampled as a negative: the candidate set is the catalog, no shift, same value.
    sampled = future_loss(model, top, targets, TrainConfig(full_softmax_max_items=1, n_negatives=3), gen)
    assert full.item() == pytest.approx(sampled.item(), rel=1e-5)
    assert float(future_loss(model, top, torch.full((4, 2), -1), TrainConfig(), gen)) == 0.0


def test_a_model_without_heads_has_no_aux_loss() -> None:
    model = SequenceModel(small_config(aux_heads=False), VOCAB.n_items, VOCAB.n_inputs)
    _, batch = toy_batch()
    out = model(batch.sequences, batch.state)
    labels = labels_of(model, batch)
    assert aux_losses(model, out.hidden, labels, TrainConfig(), torch.Generator()) == {}
    assert weighted_aux_loss({}, TrainConfig()) is None
    with pytest.raises(ValueError, match="next_type_weight must be a finite number >= 0"):
        TrainConfig(next_type_weight=-1.0)

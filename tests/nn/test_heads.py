"""Each auxiliary head learns a toy behaviour whose answer is known, trained through the real labels
and losses of `training/multitask.py` (a few hundred small full-batch steps)."""

from __future__ import annotations

import math

import pytest
import torch

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.features import encode_arrays
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.events import TYPE_INDEX, Event, EventType, make_event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.training.batching import TrainBatch, make_batch, make_windows
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.multitask import AuxLabels, aux_labels, aux_losses, weighted_aux_loss
from tests.seqkit import T0, small_config

ITEMS = tuple(f"i{k}" for k in range(6))
CATEGORY = {item: f"c{k % 3}" for k, item in enumerate(ITEMS)}
WITHIN_S, BETWEEN_S = 10, 7200
SESSIONS = 8
K, STEPS, LR = 3, 150, 0.03


def toy_user(user: str, buyer: bool) -> list[Event]:
    """Sessions of three events, 10 s apart, 2 h between sessions; items walk the catalog in a cycle
    (so the next item, its category and the next items are known); a buyer's third event of every
    session is a purchase, a browser only clicks."""
    events, ts = [], T0
    for s in range(SESSIONS):
        for j in range(3):
            k = 3 * s + j
            kind = EventType.PURCHASE if buyer and j == 2 else EventType.CLICK
            events.append(make_event(user, kind, ts, item_id=ITEMS[k % len(ITEMS)]))
            ts += (WITHIN_S if j < 2 else BETWEEN_S) * 1000
    return events


def trained(future_k: int, steps: int) -> tuple[SequenceModel, TrainBatch, AuxLabels, torch.Tensor]:
    """A small model trained on the heads' losses only; returns it with the batch, labels, hidden."""
    torch.manual_seed(0)
    vocab = ItemVocab(ITEMS, n_oov_buckets=2)
    cats = CategoryVocab.build(CATEGORY, ITEMS)
    config = small_config(hidden_size=24, future_k=future_k)
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs, cats, vocab.items)
    users = [toy_user(f"u{n}", buyer=n % 2 == 0) for n in range(4)]
    encoded = [encode_arrays(u, vocab, config, cats) for u in users]
    batch = make_batch(encoded, make_windows([len(e) for e in encoded], 200, 0), config)
    labels = aux_labels(batch.sequences, batch.state, batch.purchase_mask, model, future_k)
    cfg = TrainConfig(
        session_purchase_weight=1.0,
        next_type_weight=1.0,
        log_gap_weight=1.0,
        session_rest_weight=1.0,
        next_category_weight=1.0,
        future_weight=1.0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        hidden = model(batch.sequences, batch.state).hidden
        loss = weighted_aux_loss(aux_losses(model, hidden, labels, cfg, gen), cfg)
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        hidden = model(batch.sequences, batch.state).hidden
    return model, batch, labels, hidden


@pytest.fixture(scope="module")
def toy() -> tuple[SequenceModel, TrainBatch, AuxLabels, torch.Tensor]:
    return trained(future_k=K, steps=STEPS)


def after_first_session(mask: torch.Tensor) -> torch.Tensor:
    """Positions from the second session on: before a first purchase no head can tell a buyer."""
    return mask & (torch.arange(mask.shape[1])[None] >= 3)


def test_next_type_head_learns_when_a_buyer_buys(toy: tuple) -> None:
    model, batch, _, hidden = toy
    mask = after_first_session(batch.purchase_mask)
    predicted = model.heads.next_type(hidden[mask]).argmax(-1)
    nxt = torch.cat([batch.sequences.types[:, 1:], batch.sequences.types[:, :1]], 1)[mask]
    assert set(nxt.tolist()) == {TYPE_INDEX[EventType.CLICK], TYPE_INDEX[EventType.PURCHASE]}
    assert torch.equal(predicted, nxt)


def test_session_purchase_head_separates_buyers_from_browsers(toy: tuple) -> None:
    model, _, labels, hidden = toy
    mask = after_first_session(labels.session_mask)
    prob = torch.sigmoid(model.heads.session_purchase(hidden[mask]))
    truth = labels.session_purchase[mask[labels.session_mask]]
    assert truth.min() == 0 and truth.max() == 1  # both classes are there
    assert bool(((prob > 0.5) == (truth > 0.5)).all())


def test_gap_and_session_rest_heads_learn_the_rhythm(toy: tuple) -> None:
    model, batch, labels, hidden = toy
    mask = after_first_session(batch.purchase_mask)
    gap = model.heads.log_gap(hidden[mask])
    truth = labels.log_gap[mask[batch.purchase_mask]]
    assert sorted(set(truth.tolist())) == pytest.approx([math.log1p(WITHIN_S), math.log1p(BETWEEN_S)])
    assert (gap - truth).abs().max() < 0.5  # the two answers are 6.5 apart
    smask = after_first_session(labels.session_mask)
    rest = model.heads.session_rest(hidden[smask])
    rest_truth = labels.session_rest[smask[labels.session_mask]]
    # Mid-session 2 or 1 events left; at a session's end, the next session's 3.
    assert sorted(set(rest_truth.tolist())) == pytest.approx([math.log1p(n) for n in (1, 2, 3)])
    assert (rest - rest_truth).abs().max() < 0.2


def test_next_category_head_learns_the_category_cycle(toy: tuple) -> None:
    model, _, labels, hidden = toy
    predicted = model.heads.next_category(hidden[labels.category_mask]).argmax(-1)
    assert labels.next_category.unique().numel() == 3
    assert torch.equal(predicted, labels.next_category)


def test_future_head_ranks_the_next_k_items_first(toy: tuple) -> None:
    model, _, labels, hidden = toy
    k = K
    top = hidden[labels.counted]
    scores = model.heads.future(top) @ model.item_emb.weight[: model.n_items].T + model.item_bias
    full = (labels.future >= 0).all(-1)  # positions with k events ahead
    best = scores[full].topk(k, -1).indices.sort(-1).values
    assert full.sum() > 50
    assert torch.equal(best, labels.future[full].sort(-1).values)


def test_session_purchase_probability_is_the_head_on_the_state(toy: tuple) -> None:
    model, batch, _, hidden = toy
    with torch.no_grad():
        out = model(batch.sequences, batch.state, return_state=True)
        prob = model.session_purchase_probability(out.state)
    rows = torch.arange(len(prob))
    last = hidden[rows, batch.sequences.lengths - 1]
    assert torch.allclose(prob, torch.sigmoid(model.heads.session_purchase(last)), atol=1e-6)
    # Buyers (even users) end on a purchase session, so the next one is likely a buying one too.
    assert bool((prob[0::2] > 0.5).all()) and bool((prob[1::2] < 0.5).all())

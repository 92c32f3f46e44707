"""Tests for the training losses: chunked full softmax, the sampled softmax, purchase BCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from behavior_stream.nn.network import SequenceModel
from behavior_stream.training.objective import (
    _member_mask,
    full_softmax_loss,
    purchase_loss,
    sampled_softmax_loss,
)
from tests.seqkit import small_model, tiny_vocab


def inputs(model: SequenceModel, n: int = 9, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random top states, history windows with repeats and empty slots, and targets (some in history)."""
    g = torch.Generator().manual_seed(seed)
    w = model.config.repeat_window
    top = torch.randn(n, model.config.hidden_size, generator=g)
    history = torch.randint(-1, 6, (n, w), generator=g)  # few distinct items: repeats within a window
    types = torch.randint(0, 5, (n, w), generator=g)
    targets = torch.randint(0, model.n_items, (n,), generator=g)
    targets[:3] = history[:3, -1].clamp(min=0)
    return top, history, types, targets


def grads(model: SequenceModel, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


@pytest.mark.parametrize("max_elements", [1, 1 << 30])
def test_full_softmax_matches_plain_cross_entropy(max_elements: int) -> None:
    model = small_model(tiny_vocab())
    top, history, types, targets = inputs(model)
    expected = F.cross_entropy(model.score_hidden(top, history, types), targets)
    expected_grads = grads(model, expected)
    loss = full_softmax_loss(model, top, history, types, targets, chunk=4, max_elements=max_elements)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(grads(model, loss), expected_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_sampled_softmax_with_every_item_sampled_is_the_full_softmax() -> None:
    model = small_model(tiny_vocab())
    top, history, types, targets = inputs(model)
    gen = torch.Generator().manual_seed(0)
    sampled = sampled_softmax_loss(model, top, history, types, targets, model.n_items, gen)
    full = F.cross_entropy(model.score_hidden(top, history, types), targets)
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)


def test_sampled_softmax_correction_for_partial_samples() -> None:
    """With empty histories, each sampled negative stands for n_items / k items."""
    model = small_model(tiny_vocab())
    top, history, types, targets = inputs(model)
    history = torch.full_like(history, -1)
    k = 7
    negatives = torch.randperm(model.n_items, generator=torch.Generator().manual_seed(5))[:k]
    scores = model.score_hidden(top, history, types)
    expected = []
    for i, t in enumerate(targets.tolist()):
        neg = [j for j in negatives.tolist() if j != t]
        logits = torch.cat([scores[i, t : t + 1], scores[i, neg] + math.log(model.n_items / k)])
        expected.append(torch.logsumexp(logits, 0) - scores[i, t])
    loss = sampled_softmax_loss(model, top, history, types, targets, k, torch.Generator().manual_seed(5))
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_member_mask() -> None:
    ids = torch.tensor([1, 4, 6, 9])
    values = torch.tensor([[4, 9, -1], [5, 10, 0], [6, 6, 1]])
    assert _member_mask(ids, values).tolist() == [
        [False, True, False, True],
        [False, False, False, False],
        [True, False, True, False],
    ]


def test_purchase_loss_is_bce() -> None:
    model = small_model(tiny_vocab())
    top = torch.randn(5, model.config.hidden_size)
    labels = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])
    probs = torch.sigmoid(model.purchase_logit(top))
    expected = -(labels * probs.log() + (1 - labels) * (1 - probs).log()).mean()
    assert purchase_loss(model, top, labels).item() == pytest.approx(expected.item(), rel=1e-5)

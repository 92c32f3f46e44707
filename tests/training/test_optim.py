"""The optimisers `TrainConfig.optimizer` selects: AdamW, and Adagrad with momentum (GRU4Rec's)."""

from __future__ import annotations

import pytest
import torch

from behavior_stream.training.config import TrainConfig
from behavior_stream.training.optim import MomentumAdagrad, WeightAverage, make_optimizer


def test_momentum_adagrad_follows_its_update_rule() -> None:
    """Two steps by hand: G += g**2; v = m v + lr g / sqrt(G + eps); p -= v."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = MomentumAdagrad([p], lr=0.1, momentum=0.5, eps=1e-6)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0])]
    expected, sum_sq, velocity = p.detach().clone(), torch.zeros(2), torch.zeros(2)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        sum_sq += g * g
        velocity = 0.5 * velocity + 0.1 * g / (sum_sq + 1e-6).sqrt()
        expected -= velocity
        assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_make_optimizer_follows_the_config_and_decays_per_epoch() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    cfg = TrainConfig(optimizer="adagrad", lr=0.2, momentum=0.2, lr_decay=0.5)
    adagrad, schedule = make_optimizer([p], cfg)
    assert isinstance(adagrad, MomentumAdagrad) and adagrad.param_groups[0]["momentum"] == 0.2
    p.grad = torch.ones(3)
    adagrad.step()  # an epoch's steps, then the epoch's decay
    schedule.step()
    assert adagrad.param_groups[0]["lr"] == pytest.approx(0.1)
    adamw, _ = make_optimizer([p], TrainConfig())
    assert isinstance(adamw, torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig(momentum=1.0)


def test_weight_average_follows_its_update_rule_and_swaps_back() -> None:
    """avg = decay avg + (1 - decay) w from the initial weights; `applied` swaps it in for a block."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    frozen = torch.nn.Parameter(torch.tensor([5.0]), requires_grad=False)
    average = WeightAverage([p, frozen], decay=0.75)
    expected = p.detach().clone()
    for w in ([3.0, 2.0], [-1.0, 0.0]):
        with torch.no_grad():
            p.copy_(torch.tensor(w))
        average.update()
        expected = 0.75 * expected + 0.25 * torch.tensor(w)
    assert len(average.shadow) == 1  # a frozen parameter is not averaged
    with average.applied():
        assert torch.allclose(p.detach(), expected)
    assert torch.equal(p.detach(), torch.tensor([-1.0, 0.0]))
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError("the raw weights come back on an error too")
    assert torch.equal(p.detach(), torch.tensor([-1.0, 0.0]))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([p], decay=1.0)

"""The optimiser and learning-rate schedule of `train_model`: AdamW, or Adagrad with momentum.

Adagrad with momentum is GRU4Rec's optimiser (its `adagrad` with `momentum`): each parameter's
step is lr * g / sqrt(sum of its past g**2), smoothed by heavy-ball momentum. Its per-parameter
step sizes only shrink, which suits embeddings of items seen at very different rates.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from behavior_stream.training.config import TrainConfig


class MomentumAdagrad(torch.optim.Optimizer):
    """Adagrad whose update is accumulated with momentum: v = m v + lr g / sqrt(G + eps); p -= v."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0, eps: float = 1e-6) -> None:
        if lr <= 0 or not 0.0 <= momentum < 1.0 or eps <= 0:
            raise ValueError(f"need lr > 0, momentum in [0, 1), eps > 0; got {lr}, {momentum}, {eps}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["sum_sq"] = torch.zeros_like(p)
                    state["velocity"] = torch.zeros_like(p)
                g = p.grad
                state["sum_sq"].addcmul_(g, g)
                update = g / (state["sum_sq"] + eps).sqrt_()
                velocity = state["velocity"].mul_(momentum).add_(update, alpha=lr)
                p.sub_(velocity)


def make_optimizer(
    params: Iterable[Tensor], cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """(optimiser, per-epoch exponential lr decay) as `cfg` asks."""
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "adagrad":
        optimizer = MomentumAdagrad(params, cfg.lr, cfg.momentum)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, cfg.lr_decay)

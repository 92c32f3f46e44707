"""Settings of training (`TrainConfig`): optimisation, data split, early stopping.

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from behavior_stream.data.splits import SplitUnit

Monitor = Literal["recall", "mrr"]
# Next-item softmax: "auto" is exact up to `full_softmax_max_items` catalog items, sampled above.
ItemSoftmax = Literal["auto", "full", "sampled"]
# Proposal of the sampled softmax's negatives: uniform, or popularity ** sample_alpha with logQ.
Negatives = Literal["uniform", "popularity"]
Optimizer = Literal["adamw", "adagrad"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimization, data split and early-stopping settings (the model's own are in `ModelConfig`)."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.02
    lr_decay: float = 0.5  # learning-rate multiplier after each epoch: fast start, then settle
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    seed: int = 0
    threads: int = 1
    valid_frac: float = 0.1
    test_frac: float = 0.1
    split_unit: SplitUnit = "event"
    max_len: int = 200
    burn_in: int = 50
    n_oov_buckets: int = 1024
    optimizer: Optimizer = "adamw"
    momentum: float = 0.0  # of optimizer "adagrad" (GRU4Rec's Adagrad with momentum)
    # Per-step decay of a moving average of the weights, which is what is validated and kept
    # (training/optim.py `WeightAverage`); 0 = off, the raw weights are used.
    ema_decay: float = 0.0
    # Up to this catalog size the softmax is exact (in chunks); above it, sampled negatives.
    item_softmax: ItemSoftmax = "auto"
    full_softmax_max_items: int = 20_000
    n_negatives: int = 2048
    negatives: Negatives = "uniform"
    sample_alpha: float = 0.5  # popularity exponent of `negatives="popularity"` (0 = uniform)
    softmax_chunk: int = 512
    purchase_weight: float = 0.2
    k: int = 20
    monitor: Monitor = "recall"
    patience: int = 2
    progress: bool = True
    # Auxiliary heads (nn/heads.py, training/multitask.py): weights of their losses beside the
    # next-item loss; a head the model lacks (no side data, future_k 0) adds nothing. Session
    # purchase at 1.0 (not 0.2) is what moved the next-session purchase probe off chance on
    # generated data, at the same Recall@20 (README, "Representations with intent").
    session_purchase_weight: float = 1.0
    next_type_weight: float = 0.1
    log_gap_weight: float = 0.05
    session_rest_weight: float = 0.2
    next_category_weight: float = 0.1
    future_weight: float = 0.2

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1 or self.k < 1:
            raise ValueError(f"epochs, batch_size, threads and k must be >= 1: {self}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError(f"need lr > 0 and lr_decay in (0, 1], got {self.lr}, {self.lr_decay}")
        for name, kind in (("monitor", Monitor), ("item_softmax", ItemSoftmax), ("negatives", Negatives),
                           ("optimizer", Optimizer)):  # fmt: skip
            if getattr(self, name) not in get_args(kind):
                raise ValueError(f"{name} must be one of {get_args(kind)}, got {getattr(self, name)!r}")
        if self.n_negatives < 1 or not 0.0 <= self.sample_alpha <= 1.0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"need n_negatives >= 1, sample_alpha in [0, 1], momentum in [0, 1): {self}")
        aux = ("session_purchase", "next_type", "log_gap", "session_rest", "next_category", "future")
        if any(getattr(self, f"{name}_weight") < 0 for name in aux):
            raise ValueError(f"auxiliary loss weights must be >= 0: {self}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.max_len < 1 or self.burn_in < 0 or self.patience < 1:
            raise ValueError(f"need max_len >= 1, burn_in >= 0, patience >= 1: {self}")

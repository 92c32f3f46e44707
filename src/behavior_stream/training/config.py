"""Settings of training (`TrainConfig`): optimisation, data split, early stopping.

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from behavior_stream.data.splits import SplitUnit

Monitor = Literal["recall", "mrr"]


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
    # Up to this catalog size the softmax is exact (in chunks); above it, sampled negatives.
    full_softmax_max_items: int = 20_000
    n_negatives: int = 2048
    softmax_chunk: int = 512
    purchase_weight: float = 0.2
    k: int = 20
    monitor: Monitor = "recall"
    patience: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1 or self.k < 1:
            raise ValueError(f"epochs, batch_size, threads and k must be >= 1: {self}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError(f"need lr > 0 and lr_decay in (0, 1], got {self.lr}, {self.lr_decay}")
        if self.monitor not in get_args(Monitor):
            raise ValueError(f"monitor must be one of {get_args(Monitor)}, got {self.monitor!r}")
        if self.max_len < 1 or self.burn_in < 0 or self.patience < 1:
            raise ValueError(f"need max_len >= 1, burn_in >= 0, patience >= 1: {self}")

"""Settings of the sequence model (`ModelConfig`, stored in checkpoints) and of its training (`TrainConfig`).

No torch here: the CLI builds and validates both before importing the model code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from model.data import SplitUnit

Cell = Literal["gru", "lstm"]
CELLS: tuple[str, ...] = get_args(Cell)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of `model.network.SequenceModel`; stored in every checkpoint."""

    cell: Cell = "gru"
    hidden_size: int = 64
    item_dim: int = 32
    type_dim: int = 8
    query_dim: int = 16
    gap_dim: int = 8
    num_layers: int = 1
    dropout: float = 0.1
    # Log2-second gap buckets: bucket 0 is "no previous event", the last bucket absorbs long gaps.
    n_gap_buckets: int = 24
    query_buckets: int = 8192
    query_ngram: int = 3
    session_gap_ms: int = 30 * 60 * 1000
    repeat_window: int = 32
    repeat_dim: int = 32

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        positive = (
            "hidden_size",
            "item_dim",
            "type_dim",
            "query_dim",
            "gap_dim",
            "num_layers",
            "query_buckets",
            "query_ngram",
            "session_gap_ms",
            "repeat_window",
            "repeat_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_gap_buckets < 2:
            raise ValueError(
                f"n_gap_buckets must be >= 2 (first-event bucket + gaps), got {self.n_gap_buckets}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type form for checkpoints (loadable with `torch.load(weights_only=True)`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error so a mismatched checkpoint fails loudly."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**data)


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

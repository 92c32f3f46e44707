"""Settings of the sequence model (`ModelConfig`, stored in every checkpoint).

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Cell = Literal["gru", "lstm"]
CELLS: tuple[str, ...] = get_args(Cell)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of `behavior_stream.nn.network.SequenceModel`; stored in every checkpoint."""

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

"""Settings of the sequence model (`ModelConfig`, stored in every checkpoint).

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Cell = Literal["gru", "lstm"]
CELLS: tuple[str, ...] = get_args(Cell)
# The values of fields added after the first checkpoints, for a stored config that lacks them.
LEGACY_OFF: dict[str, Any] = {"category_dim": 0, "aux_heads": False, "future_k": 0, "category_output": False}


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
    # Item side data and auxiliary heads (nn/heads.py). A checkpoint written before these existed
    # loads with them off (LEGACY_OFF). category_dim 0: no category input; future_k 0: no
    # multi-future head.
    category_dim: int = 16
    aux_heads: bool = True
    future_k: int = 0
    # With categories, an item's output vector (what queries are scored against, and what the ANN
    # index holds) adds a projection of its category's embedding: items seen a few times share
    # what their category learned (nn/network.py `item_vectors`).
    category_output: bool = True
    # 0: queries score items by dot product. > 0: by cosine similarity times this scale (unit
    # query and item vectors, as NISER does), the item bias still added.
    cosine_scale: float = 0.0
    # Sequential rules (nn/rules.py): > 0 adds `rules_weight * log1p(rules_sharpness * share)` to
    # the followers of the user's last `rules_recent` items, from a table of each item's
    # `rules_neighbours` strongest followers within `rules_window` events in the training split.
    # 0: no table, no term.
    rules_weight: float = 0.0
    rules_sharpness: float = 300.0
    rules_recent: int = 3
    rules_neighbours: int = 20
    rules_window: int = 10

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
            "rules_recent",
            "rules_neighbours",
            "rules_window",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_gap_buckets < 2:
            raise ValueError(
                f"n_gap_buckets must be >= 2 (first-event bucket + gaps), got {self.n_gap_buckets}"
            )
        for name in ("category_dim", "future_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.cosine_scale >= 0.0:
            raise ValueError(f"cosine_scale must be >= 0 (0: dot product), got {self.cosine_scale}")
        if not self.rules_weight >= 0.0:
            raise ValueError(f"rules_weight must be >= 0 (0: no rules), got {self.rules_weight}")
        if not self.rules_sharpness > 0.0:
            raise ValueError(f"rules_sharpness must be > 0, got {self.rules_sharpness}")
        if self.rules_recent > self.repeat_window:
            raise ValueError(
                f"rules_recent ({self.rules_recent}) reads the history window: at most repeat_window "
                f"({self.repeat_window})"
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

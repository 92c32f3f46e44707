"""Settings of the sequence model (`ModelConfig`, stored in every checkpoint).

No torch here: the CLI builds and validates it before importing the model code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Cell = Literal["gru", "lstm"]
CELLS: tuple[str, ...] = get_args(Cell)
# The values of fields added after the first checkpoints, for a stored config that lacks them.
LEGACY_OFF: dict[str, Any] = {"category_dim": 0, "aux_heads": False, "future_k": 0, "category_output": False}


class SettingError(ValueError):
    """A config field out of its range: `fields` names it (or the fields that conflict) and
    `problem` says what is allowed and what was given, so a caller can name the option or the
    settings-file key the value came from instead of the field."""

    def __init__(self, fields: str | tuple[str, ...], problem: str) -> None:
        self.fields = (fields,) if isinstance(fields, str) else fields
        self.problem = problem
        super().__init__(f"{' and '.join(self.fields)} {problem}")


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """`value` is an integer in [low, high] (no upper bound when `high` is None), else `SettingError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingError(name, f"must be an integer {bounds}, got {value!r}")


def _in_range(value: int | float, low: float, high: float, low_open: bool, high_open: bool) -> bool:
    finite = isinstance(value, int) or math.isfinite(value)  # a huge int does not convert to float
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return finite and above and below


def check_float(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """`value` is a finite number from `low` to `high` (each bound included unless open), else
    `SettingError`. NaN and infinities never pass: a NaN fails no `<` check, so it must be named."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not _in_range(value, low, high, low_open, high_open)
    ):
        if math.isinf(high):
            bounds = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            bounds = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise SettingError(name, f"must be {bounds}, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """`value` is one of `choices`, else `SettingError`."""
    options = tuple(choices)
    if value not in options:
        raise SettingError(name, f"must be one of {', '.join(options)}, got {value!r}")


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
        check_choice("cell", self.cell, CELLS)
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
            check_int(name, getattr(self, name), 1)
        check_int("n_gap_buckets", self.n_gap_buckets, 2)  # the first-event bucket + gaps
        for name in ("category_dim", "future_k"):
            check_int(name, getattr(self, name), 0)
        check_float("cosine_scale", self.cosine_scale, 0.0)  # 0: dot product
        check_float("rules_weight", self.rules_weight, 0.0)  # 0: no rules
        check_float("rules_sharpness", self.rules_sharpness, 0.0, low_open=True)
        if self.rules_recent > self.repeat_window:
            raise SettingError(
                "rules_recent",
                f"reads the history window: must be <= repeat_window ({self.repeat_window}), "
                f"got {self.rules_recent}",
            )
        check_float("dropout", self.dropout, 0.0, 1.0, high_open=True)

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

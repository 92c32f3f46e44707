"""The settings' own checks (TrainConfig, ModelConfig): each bad value is a `SettingError` naming
its field and value, never the whole config; NaN and infinities are refused everywhere."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest

from behavior_stream.nn.config import ModelConfig, SettingError
from behavior_stream.training.config import TrainConfig

NOT_FINITE = (math.nan, math.inf, -math.inf)
FLOAT_TRAIN_FIELDS = [f.name for f in fields(TrainConfig) if isinstance(f.default, float)]
FLOAT_MODEL_FIELDS = [f.name for f in fields(ModelConfig) if isinstance(f.default, float)]


def setting(field: str, value: object) -> dict[str, Any]:
    """One field's keyword argument, typed loosely: the tests pass values of the wrong type too."""
    return {field: value}


BAD_TRAIN = [
    ("epochs", -1),
    ("epochs", 0),
    ("batch_size", 0),
    ("threads", 0),
    ("threads", 10**20),  # torch would overflow
    ("max_len", 0),
    ("patience", -1),
    ("k", 0),
    ("burn_in", -1),
    ("softmax_chunk", 0),
    ("n_negatives", 0),
    ("n_oov_buckets", 0),  # an unknown item's input row is hashed into one of these buckets
    ("n_oov_buckets", -5),
    ("full_softmax_max_items", -1),
    ("seed", -1),
    ("seed", 2**32),
    ("seed", 99999999999999999999),
    ("lr", 0.0),
    ("lr", -1.0),
    ("lr_decay", 0.0),
    ("lr_decay", 1.5),
    ("weight_decay", -1.0),
    ("clip_norm", -1.0),
    ("clip_norm", 0.0),  # would scale every gradient to nothing
    ("valid_frac", 0.0),  # training always validates
    ("valid_frac", -0.1),
    ("valid_frac", 1.0),
    ("test_frac", -0.1),
    ("test_frac", 1.5),
    ("momentum", 1.0),
    ("momentum", -0.5),
    ("ema_decay", 1.0),
    ("sample_alpha", 1.5),
    ("purchase_weight", -0.2),
    ("future_weight", -1.0),
    ("split_unit", "session"),
    ("monitor", "auc"),
    ("optimizer", "sgd"),
]


@pytest.mark.parametrize(("field", "value"), BAD_TRAIN)
def test_a_bad_train_setting_names_only_its_field_and_value(field: str, value: Any) -> None:
    with pytest.raises(SettingError) as caught:
        TrainConfig(**setting(field, value))
    assert caught.value.fields == (field,)
    assert repr(value) in caught.value.problem
    message = str(caught.value)
    assert message.startswith(f"{field} ") and "TrainConfig(" not in message and len(message) < 120


@pytest.mark.parametrize(
    ("config", "field"),
    [(TrainConfig, f) for f in FLOAT_TRAIN_FIELDS] + [(ModelConfig, f) for f in FLOAT_MODEL_FIELDS],
)
@pytest.mark.parametrize("value", NOT_FINITE)
def test_every_float_setting_must_be_finite(config: type, field: str, value: float) -> None:
    with pytest.raises(SettingError) as caught:
        config(**setting(field, value))
    assert caught.value.fields == (field,)


def test_the_boundaries_themselves_are_accepted() -> None:
    TrainConfig(seed=0)
    TrainConfig(seed=2**32 - 1)
    TrainConfig(test_frac=0.0, lr_decay=1.0, weight_decay=0.0, momentum=0.0, full_softmax_max_items=0)
    ModelConfig(dropout=0.0, cosine_scale=0.0, future_k=0, category_dim=0)


def test_fractions_that_leave_no_training_name_both_fields() -> None:
    with pytest.raises(SettingError) as caught:
        TrainConfig(valid_frac=0.5, test_frac=0.5)
    assert caught.value.fields == ("valid_frac", "test_frac")
    assert "0.5 + 0.5" in caught.value.problem


@pytest.mark.parametrize(
    ("field", "value"),
    [("hidden_size", 0), ("item_dim", 0), ("num_layers", -1), ("n_gap_buckets", 1), ("future_k", -1),
     ("cosine_scale", -3.0), ("dropout", 1.0), ("rules_sharpness", 0.0), ("cell", "rnn"),
     ("hidden_size", "16"), ("hidden_size", True)],
)  # fmt: skip
def test_a_bad_model_setting_names_its_field(field: str, value: Any) -> None:
    with pytest.raises(SettingError) as caught:
        ModelConfig(**setting(field, value))
    assert caught.value.fields == (field,)
    assert str(caught.value).startswith(f"{field} must be") and repr(value) in str(caught.value)

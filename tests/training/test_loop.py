"""Tests for training: the loss goes down, seeds reproduce, both softmax paths, splits, metadata."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch

from behavior_stream.data.splits import eval_sequences, time_split
from behavior_stream.evaluation.model_scorer import ModelScorer
from behavior_stream.nn.checkpoint import load_checkpoint, save_checkpoint
from behavior_stream.schema.events import Event
from behavior_stream.simulate.generator import generate
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import NonFiniteLoss, TooLittleData, TrainResult, rank_metrics, train_model
from tests.seqkit import small_config

FAST = TrainConfig(epochs=4, batch_size=16, lr=0.01, patience=10, progress=False, max_len=40, burn_in=10)


@cache
def events() -> list[Event]:
    """A small generated data set: about 60 users browsing 150 items."""
    return generate(users=60, items=150, events=4_000, seed=3).events


@cache
def trained(cell: str = "gru") -> TrainResult:
    return train_model(
        events(),
        small_config(cell=cell, hidden_size=16, item_dim=16),
        FAST,
        categories=generate(60, 150, 0, 3).item_categories,
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_lowers_the_loss(cell: str) -> None:
    result = trained(cell)
    losses = [s.train_loss for s in result.history]
    assert len(losses) == FAST.epochs
    assert losses[-1] < losses[0] - 0.1
    assert all(s.examples_per_s > 0 and s.seconds > 0 for s in result.history)
    assert not result.model.training


def test_best_epoch_is_picked_on_validation() -> None:
    result = trained()
    figures = [(s.valid_recall, s.valid_mrr) for s in result.history]
    assert result.best_epoch == 1 + figures.index(max(figures))  # recall first, MRR breaks ties
    # The returned weights are the best epoch's: re-scoring validation reproduces its figures.
    split = time_split(events(), FAST.valid_frac, FAST.test_frac)
    again = rank_metrics(ModelScorer(result.loaded()), eval_sequences(split.train, split.valid), 20)
    assert again == result.valid
    assert (again["recall@20"], again["mrr@20"]) == max(figures)
    assert result.test is not None and result.test["predictions"] > 0


def test_metadata_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    result = trained()
    path = tmp_path / "m.pt"
    version = save_checkpoint(path, result.model, result.vocab, result.metadata, result.categories)
    loaded = load_checkpoint(path)
    meta = loaded.metadata
    assert meta["best_epoch"] == result.best_epoch and meta["model_version"] == version
    assert [h["train_loss"] for h in meta["history"]] == [s.train_loss for s in result.history]
    assert meta["train_config"]["seed"] == FAST.seed
    # Every item the side data knows is kept (a new item still brings its category to the model).
    assert result.categories == generate(60, 150, 0, 3).item_categories
    assert result.model.categories is not None and set(result.vocab.items) <= set(result.categories)
    assert loaded.item_categories == result.categories


def test_same_seed_same_model() -> None:
    cfg = replace(FAST, epochs=1)
    a, b = (train_model(events(), small_config(), cfg) for _ in range(2))
    c = train_model(events(), small_config(), replace(cfg, seed=1))
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    assert not torch.equal(a.model.item_bias, c.model.item_bias)


def test_sampled_softmax_path_learns() -> None:
    cfg = replace(FAST, full_softmax_max_items=10, n_negatives=32)
    result = train_model(events(), small_config(), cfg)
    losses = [s.train_loss for s in result.history]
    assert losses[-1] < losses[0] - 0.1


def test_separate_test_events_and_validation_figures() -> None:
    evs = events()
    split = time_split(evs, 0.0, 0.2)
    result = train_model(split.train, small_config(), replace(FAST, epochs=1), test_events=split.test)
    assert result.metadata["split"]["test"] == len(split.test)
    assert result.metadata["split"]["train"] + result.metadata["split"]["valid"] == len(split.train)
    assert result.test is not None
    expected = rank_metrics(ModelScorer(result.loaded()), eval_sequences(split.train, split.test), 20)
    assert result.test == expected


def test_weight_average_is_what_is_validated_and_kept() -> None:
    cfg = replace(FAST, epochs=2, ema_decay=0.9)
    result = train_model(events(), small_config(), cfg)
    raw = train_model(events(), small_config(), replace(cfg, ema_decay=0.0))
    # Same seed, same steps: only the kept weights differ (the average, not the last step's).
    assert [s.train_loss for s in result.history] == [s.train_loss for s in raw.history]
    assert not torch.equal(result.model.item_bias, raw.model.item_bias)
    # The returned weights are the ones validated: re-scoring validation reproduces the figures.
    split = time_split(events(), cfg.valid_frac, cfg.test_frac)
    again = rank_metrics(ModelScorer(result.loaded()), eval_sequences(split.train, split.valid), 20)
    assert again == result.valid
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_trained_model_beats_popularity_on_validation() -> None:
    result = trained()
    assert result.valid["recall@20"] > 0.2  # random ranking over 150 items would give ~0.13


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        TrainConfig(lr=0.0)


def test_a_part_with_nothing_to_score_stops_before_training() -> None:
    """Five events leave validation without a next-item target: every figure would be NaN."""
    with pytest.raises(TooLittleData, match=r"validation part .* no next-item target") as caught:
        train_model(events()[:5], small_config(), replace(FAST, test_frac=0.0))
    assert caught.value.setting == "valid_frac"
    # Enough for validation, too few for the test part that test_frac asks for.
    with pytest.raises(TooLittleData, match="test part") as caught:
        train_model(events()[:400], small_config(), replace(FAST, valid_frac=0.5, test_frac=0.001))
    assert caught.value.setting == "test_frac"
    split = time_split(events(), 0.0, 0.2)
    with pytest.raises(TooLittleData, match="test part") as caught:  # one event: nothing to predict
        train_model(split.train, small_config(), FAST, test_events=split.test[:1])
    assert caught.value.setting is None


def test_a_loss_that_becomes_nan_stops_training_naming_epoch_and_step() -> None:
    logged: list[int] = []
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, batch \d+ of \d+.*lower the learning rate") as caught:
        train_model(
            events(), small_config(), replace(FAST, lr=1e308), on_epoch=lambda s: logged.append(s.epoch)
        )
    assert "nan" in str(caught.value) or "inf" in str(caught.value)
    assert logged == []  # stopped inside the first epoch, before any validation

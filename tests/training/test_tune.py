"""The search: it tunes on `train`'s split without the test part, prunes per epoch, searches negatives
only when sampled, and the per-epoch hook of `train_model` sees every epoch."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import optuna
import pytest

from behavior_stream.data.splits import SplitUnit, time_split
from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import Event
from behavior_stream.simulate.generator import generate
from behavior_stream.training import tune
from behavior_stream.training.config import TrainConfig
from behavior_stream.training.loop import EpochStats, TooLittleData, train_model
from behavior_stream.training.tune import (
    COSINE_SCALES,
    N_NEGATIVES,
    NEGATIVES,
    RULES_WEIGHTS,
    run_study,
    trial_rows,
    tuning_events,
)

FAST = TrainConfig(batch_size=64, max_len=40, burn_in=10, progress=False, threads=1)


@cache
def events() -> list[Event]:
    """About 40 users browsing 80 items: a trial of one epoch takes well under a second."""
    return generate(users=40, items=80, events=2_500, seed=2).events


@pytest.mark.parametrize("unit", ["event", "sequence"])
def test_tuning_split_is_trains_split_without_the_test_part(unit: SplitUnit) -> None:
    cfg = replace(FAST, split_unit=unit)
    full = time_split(events(), cfg.valid_frac, cfg.test_frac, unit)
    kept, frac = tuning_events(events(), cfg)
    again = time_split(kept, frac, 0.0, unit)
    assert again.train == full.train and again.valid == full.valid and full.test
    assert not {id(e) for e in kept} & {id(e) for e in full.test}


def test_a_separate_validation_file_must_come_later() -> None:
    ordered = sorted(events(), key=lambda e: e.ts)
    early, late = ordered[:2_000], ordered[2_000:]
    kept, frac = tuning_events(early, FAST, late)
    assert time_split(kept, frac, 0.0, "event").valid == late
    with pytest.raises(ValueError, match="after the training events"):
        tuning_events(late, FAST, early)


def test_gru4rec_compat_drops_validation_events_of_unseen_items() -> None:
    ordered = sorted(events(), key=lambda e: e.ts)
    early, late = ordered[:2_000], ordered[2_000:]
    seen = {e.item_id for e in early}
    new_item = replace(late[-1], event_id="new", item_id="never-in-training", ts=late[-1].ts + 1)
    late = [*late, new_item]
    unseen = [e for e in late if e.item_id is not None and e.item_id not in seen]
    assert new_item in unseen
    kept, _ = tuning_events(early, FAST, late)
    assert new_item in kept
    kept, frac = tuning_events(early, FAST, late, drop_unseen=True)
    valid = time_split(kept, frac, 0.0, "event").valid
    assert valid == [e for e in late if e not in unseen] and new_item not in kept


def test_the_epoch_hook_sees_every_epoch_and_can_stop_training() -> None:
    seen: list[EpochStats] = []
    cfg = replace(FAST, epochs=2, patience=5)
    result = train_model(events(), ModelConfig(hidden_size=16, item_dim=16), cfg, on_epoch=seen.append)
    assert seen == result.history and len(seen) == 2

    def stop(stats: EpochStats) -> None:
        raise KeyboardInterrupt(f"stop after epoch {stats.epoch}")

    with pytest.raises(KeyboardInterrupt, match="epoch 1"):
        train_model(events(), ModelConfig(hidden_size=16, item_dim=16), cfg, on_epoch=stop)


def test_search_picks_the_best_trial_and_negatives_only_when_sampled() -> None:
    sampled = replace(FAST, full_softmax_max_items=10)  # 80 items > 10: the sampled softmax path
    result = run_study(events(), ModelConfig(), sampled, n_trials=2, budget_s=60, max_epochs=1)
    rows = trial_rows(result.study)
    assert [row["state"] for row in rows] == ["complete", "complete"]
    assert all(row["n_negatives"] in N_NEGATIVES and row["epochs"] == 1 for row in rows)
    assert all(row["negatives"] in NEGATIVES and row["weight_decay"] > 0 for row in rows)
    best = max(rows, key=lambda row: row["value"])
    assert result.study.best_trial.number == best["number"]
    assert result.train.n_negatives == best["n_negatives"] and result.train.lr == best["lr"]
    assert result.train.negatives == best["negatives"] and result.train.weight_decay == best["weight_decay"]
    assert result.model.hidden_size == best["hidden_size"] and result.model.dropout == best["dropout"]
    assert result.model.cosine_scale == best["cosine_scale"] and best["cosine_scale"] in COSINE_SCALES
    assert result.model.rules_weight == best["rules_weight"] and best["rules_weight"] in RULES_WEIGHTS
    assert result.train.valid_frac == FAST.valid_frac and result.train.test_frac == FAST.test_frac
    full = run_study(events(), ModelConfig(), FAST, n_trials=1, budget_s=60, max_epochs=1)
    assert not {"n_negatives", "negatives"} & set(full.study.best_trial.params)


def test_trials_report_each_epoch_and_are_pruned() -> None:
    ended: list[optuna.trial.FrozenTrial] = []
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # no recall reaches 2: pruned after epoch 1
    with pytest.raises(ValueError, match="no trial completed"):
        run_study(
            events(), ModelConfig(), FAST, n_trials=2, budget_s=60, max_epochs=3, pruner=always,
            on_trial=ended.append,
        )  # fmt: skip
    assert [t.state for t in ended] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in ended)


def test_a_trial_whose_training_diverges_is_pruned_and_the_search_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A learning rate that sends the loss to NaN is a bad point of the space, not bad data."""
    real_suggest = tune.suggest

    def diverging_first(trial: optuna.Trial, max_epochs: int, sampled: bool) -> tuple[dict, dict]:
        model, train = real_suggest(trial, max_epochs, sampled)
        return model, {**train, "lr": 1e308} if trial.number == 0 else train

    monkeypatch.setattr(tune, "suggest", diverging_first)
    ended: list[optuna.trial.FrozenTrial] = []
    result = run_study(
        events(), ModelConfig(), FAST, n_trials=2, budget_s=60, max_epochs=1, on_trial=ended.append
    )
    assert [t.state for t in ended] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert result.study.best_trial.number == 1


def test_data_too_small_for_the_split_fails_before_any_trial() -> None:
    ended: list[optuna.trial.FrozenTrial] = []
    with pytest.raises(TooLittleData, match="validation part"):
        run_study(
            events()[:8], ModelConfig(), FAST, n_trials=2, budget_s=60, max_epochs=1, on_trial=ended.append
        )
    assert ended == []


def test_no_searched_field_changes_the_split_the_trials_share() -> None:
    # run_study splits once and hands that split to every trial: a searched field that sized
    # the split would make the trials train on a split their settings do not describe.
    split_fields = {"valid_frac", "test_frac", "split_unit", "n_oov_buckets"}
    for sampled in (False, True):
        for seed in range(5):
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
            model, train = tune.suggest(trial, 3, sampled)
            assert model and train and not split_fields & (set(model) | set(train))

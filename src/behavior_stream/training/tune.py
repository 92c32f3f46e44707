"""Hyper-parameter search (Optuna): TPE over model and training settings, median pruning per epoch.

Each trial is one `train_model` run on the same time split `train` uses, minus its test part:
the tuner never sees test events, not even for a figure it would ignore. A trial's value is the
validation Recall@20 or MRR@20 of its best epoch, which is what `train` keeps, so training with
the best trial's settings (`train --config`) reproduces the figure on the same data. After each
epoch the trial reports its validation figure, and the median pruner stops trials that are worse
at that epoch than the median of the finished ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from behavior_stream.data.splits import SplitUnit, time_split
from behavior_stream.nn.config import ModelConfig
from behavior_stream.schema.events import Event
from behavior_stream.training.config import Monitor, TrainConfig

if TYPE_CHECKING:  # optuna loads in about a second: only when a search runs
    import optuna

log = logging.getLogger(__name__)

# Candidate values: sizes on a coarse grid (CPU training cost grows with them), rates on a log scale.
HIDDEN_SIZES = (32, 64, 96, 128, 192)
ITEM_DIMS = (16, 32, 64, 128)
BATCH_SIZES = (32, 64, 128, 256)
# 0 = dot-product scores; otherwise scaled cosine (ModelConfig.cosine_scale). 8 won on YooChoose.
COSINE_SCALES = (0.0, 5.0, 8.0, 12.0)
RULES_WEIGHTS = (0.0, 0.5, 0.75, 1.0)  # the sequential-rules term (nn/rules.py); 0 = none
# Searched only when the catalog is too big for a full softmax: how many negatives, from which proposal.
N_NEGATIVES = (512, 1024, 2048, 4096)
NEGATIVES = ("uniform", "popularity")


class NoTrialCompleted(ValueError):
    """The budget ran out before any trial finished (or every trial was pruned)."""


@dataclass(frozen=True)
class TuneResult:
    """The finished study and the best trial's settings, as `train` would take them."""

    study: optuna.Study
    model: ModelConfig
    train: TrainConfig
    metric: Monitor
    seconds: float


def _units(events: list[Event], unit: SplitUnit) -> int:
    """What `time_split` takes quantiles over: events, or sequences (users)."""
    return len(events) if unit == "event" else len({e.user_id for e in events})


def tuning_events(
    events: list[Event],
    cfg: TrainConfig,
    valid_events: list[Event] | None = None,
    drop_unseen: bool = False,
) -> tuple[list[Event], float]:
    """(events without the test part, the valid_frac that splits them into train's train/valid).

    Without `valid_events`, `events` is split as `train` splits it (cfg's fractions and unit) and
    the test part dropped, keeping the input order (which decides batch order, so results match
    `train` exactly). With them, `events` is all training and `valid_events` the validation part;
    they must come later in time. `drop_unseen` (the GRU4Rec protocol, `evaluate
    --gru4rec-compat`) removes validation events whose item never occurs in training, so the
    catalog is the training items and trials are judged as `evaluate` judges the final model.
    Either way the split is checked by redoing it.
    """
    if valid_events is None:
        split = time_split(events, cfg.valid_frac, cfg.test_frac, cfg.split_unit)
        test_ids = {id(e) for e in split.test}
        kept = [e for e in events if id(e) not in test_ids]
        train, valid = split.train, split.valid
    else:
        if drop_unseen:
            seen = {e.item_id for e in events}
            valid_events = [e for e in valid_events if e.item_id is None or e.item_id in seen]
        kept, train, valid = [*events, *valid_events], events, valid_events
    if not train or not valid:
        raise ValueError(f"need train and validation events, got {len(train)} / {len(valid)}")
    frac = _units(valid, cfg.split_unit) / _units(kept, cfg.split_unit)
    redone = time_split(kept, frac, 0.0, cfg.split_unit).valid
    if len(redone) != len(valid) or {id(e) for e in redone} != {id(e) for e in valid}:
        raise ValueError("the validation events do not all come after the training events in time")
    return kept, frac


def suggest(trial: optuna.Trial, max_epochs: int, sampled: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """One point of the search space: (ModelConfig fields, TrainConfig fields)."""
    model = {
        "hidden_size": trial.suggest_categorical("hidden_size", HIDDEN_SIZES),
        "item_dim": trial.suggest_categorical("item_dim", ITEM_DIMS),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "cosine_scale": trial.suggest_categorical("cosine_scale", COSINE_SCALES),
        "rules_weight": trial.suggest_categorical("rules_weight", RULES_WEIGHTS),
    }
    train: dict[str, Any] = {
        "lr": trial.suggest_float("lr", 1e-3, 5e-2, log=True),
        "lr_decay": trial.suggest_float("lr_decay", 0.3, 1.0),
        # Decoupled (AdamW) decay: on YooChoose validation peaks by epoch 3, then the model overfits.
        "weight_decay": trial.suggest_float("weight_decay", 1e-3, 1.0, log=True),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
        "epochs": trial.suggest_int("epochs", 1, max_epochs),
    }
    if sampled:
        train["n_negatives"] = trial.suggest_categorical("n_negatives", N_NEGATIVES)
        train["negatives"] = trial.suggest_categorical("negatives", NEGATIVES)
        if train["negatives"] == "popularity":
            train["sample_alpha"] = trial.suggest_float("sample_alpha", 0.0, 1.0)
    return model, train


def _figure(metric: Monitor, recall: float, mrr: float) -> float:
    return recall if metric == "recall" else mrr


def run_study(
    events: list[Event],
    model: ModelConfig,
    train: TrainConfig,
    *,
    n_trials: int,
    budget_s: float,
    max_epochs: int,
    valid_events: list[Event] | None = None,
    drop_unseen: bool = False,
    pruner: optuna.pruners.BasePruner | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> TuneResult:
    """Search `n_trials` points (no trial starts after `budget_s` seconds) around `model`/`train`.

    `train.monitor` is the metric optimised and `train.seed` seeds both the sampler and every
    trial's training; `on_trial` sees each trial as it ends (the CLI prints a line);
    `drop_unseen` as in `tuning_events`. Data too small for the split fails before any trial
    (`TooLittleData`); a trial whose training diverges is pruned, and the search goes on.
    """
    import optuna

    from behavior_stream.training.loop import EpochStats, NonFiniteLoss, train_model, training_parts

    kept, valid_frac = tuning_events(events, train, valid_events, drop_unseen)
    # Data too small for the split fails here, before any trial. No searched field changes the
    # split (fractions, split unit, OOV buckets), so every trial trains on this one.
    parts = training_parts(kept, replace(train, valid_frac=valid_frac, test_frac=0.0))
    n_items = len({e.item_id for e in kept if e.item_id is not None})  # the catalog train_model builds
    sampled = n_items > train.full_softmax_max_items
    metric = train.monitor

    def objective(trial: optuna.Trial) -> float:
        model_fields, train_fields = suggest(trial, max_epochs, sampled)
        trial_model = replace(model, **model_fields)
        trial_train = replace(train, **train_fields, valid_frac=valid_frac, test_frac=0.0, progress=False)

        def report(stats: EpochStats) -> None:
            trial.report(_figure(metric, stats.valid_recall, stats.valid_mrr), stats.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {stats.epoch} below the median")

        try:
            result = train_model(kept, trial_model, trial_train, on_epoch=report, parts=parts)
        except NonFiniteLoss as exc:  # a point of the search space, not the data: try others
            log.warning("trial %d pruned: %s", trial.number, exc)
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("recall@20", result.valid["recall@20"])
        trial.set_user_attr("mrr@20", result.valid["mrr@20"])
        return _figure(metric, result.valid["recall@20"], result.valid["mrr@20"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the caller prints one line per trial
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=train.seed),
        # The first trials run to the end to set the median; epochs count from 1, so epoch 1 never prunes.
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    callbacks = [lambda _study, frozen: on_trial(frozen)] if on_trial is not None else []
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=budget_s, callbacks=callbacks)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise NoTrialCompleted(f"no trial completed within {budget_s:g}s ({len(study.trials)} pruned)")
    model_fields, train_fields = _split_params(study.best_trial.params)
    best_model = replace(model, **model_fields)
    best_train = replace(train, **train_fields)
    return TuneResult(study, best_model, best_train, metric, time.perf_counter() - start)


def _split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's params as (ModelConfig fields, TrainConfig fields)."""
    model_keys = {f.name for f in fields(ModelConfig)}
    model = {k: v for k, v in params.items() if k in model_keys}
    return model, {k: v for k, v in params.items() if k not in model_keys}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, seconds, best epoch, then its params.

    The value of a complete trial is its best epoch's figure; of a pruned one, the figure of the
    epoch it was stopped after (what the pruner judged).
    """
    rows = []
    for trial in study.trials:
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "value": value,
            "seconds": round(seconds, 2) if seconds is not None else None,
            "best_epoch": trial.user_attrs.get("best_epoch"),
        }
        row.update(trial.params)
        rows.append(row)
    return rows

"""The parts of the time split `train_model` trains, validates and tests on, checked before training.

Each part must hold something to train on or to score: with an empty validation part every figure
is 0 / 0, so `training_parts` refuses it up front (`TooLittleData`), naming the fraction that sizes
it, instead of training a model whose every figure is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from behavior_stream.data.splits import EvalSequence, eval_sequences, time_split
from behavior_stream.evaluation.ranking import next_item_targets
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.training.config import TrainConfig


class TooLittleData(ValueError):
    """A part of the split has nothing to train on or to score. `setting` is the TrainConfig
    fraction that sizes the part (None for separate test events) and `detail` what is missing,
    so a caller can name its own option for the fix."""

    def __init__(self, detail: str, setting: str | None, fix: str) -> None:
        super().__init__(f"{detail}; {fix}")
        self.detail = detail
        self.setting = setting


def _count(things: Sequence[object], noun: str) -> str:
    return f"{len(things)} {noun}{'' if len(things) == 1 else 's'}"


def _check_parts(
    train: list[Event],
    valid: list[Event],
    valid_targets: int,
    test_targets: int | None,
    cfg: TrainConfig,
    test_file: bool,
) -> None:
    """`TooLittleData` unless training has events and validation (and the test part, when one was
    asked for: separate test events, else `cfg.test_frac`) has next-item targets: without them
    every figure would be NaN (0 / 0). A target is a user's 2nd or later catalog-item event
    within the part."""
    if not train:
        fix = f"train on more events or lower valid_frac ({cfg.valid_frac})"
        raise TooLittleData(f"no training events ({_count(valid, 'validation event')})", "valid_frac", fix)
    if not valid_targets:
        detail = f"the validation part ({_count(valid, 'event')}) has no next-item target to score"
        fix = f"train on more events or raise valid_frac ({cfg.valid_frac})"
        raise TooLittleData(detail, "valid_frac", fix)
    if test_targets == 0:
        detail = "the test part has no next-item target to score"
        if not test_file:
            fix = f"train on more events or raise test_frac ({cfg.test_frac}), or set it to 0"
            raise TooLittleData(detail, "test_frac", fix)
        raise TooLittleData(detail, None, "give a longer test file")


@dataclass(frozen=True)
class TrainingParts:
    """The time split `train_model` trains on, its catalog and the sequences it scores."""

    train: list[Event]
    valid: list[Event]
    test: list[Event]
    vocab: ItemVocab
    valid_seqs: list[EvalSequence]
    test_seqs: list[EvalSequence] | None  # None: no test part


def training_parts(
    events: list[Event], cfg: TrainConfig, test_events: list[Event] | None = None
) -> TrainingParts:
    """Split `events` (test part: `test_events` when given, else `cfg.test_frac`) and check the
    parts before any training: `TooLittleData` if one has nothing to train on or to score,
    ValueError if the test events do not come after the others in time."""
    if test_events is None:
        split = time_split(events, cfg.valid_frac, cfg.test_frac, cfg.split_unit)
        train, valid, test = split.train, split.valid, split.test
    else:
        split = time_split(events, cfg.valid_frac, 0.0, cfg.split_unit)
        train, valid, test = split.train, split.valid, sorted(test_events, key=lambda e: e.ts)
    vocab = ItemVocab.build((e.item_id for e in (*train, *valid)), cfg.n_oov_buckets)
    valid_seqs = eval_sequences(train, valid)
    test_seqs = eval_sequences([*train, *valid], test) if test else None
    tested = test_events is not None or cfg.test_frac > 0  # a test part was asked for
    test_targets = len(next_item_targets(test_seqs or [], vocab).items) if tested else None
    valid_targets = len(next_item_targets(valid_seqs, vocab).items)
    _check_parts(train, valid, valid_targets, test_targets, cfg, test_events is not None)
    return TrainingParts(train, valid, test, vocab, valid_seqs, test_seqs)

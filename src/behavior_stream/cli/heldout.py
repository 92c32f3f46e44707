"""The held-out split of `evaluate` and `compare`, and the checks that refuse a misleading one.

The split comes from the command line, else from the checkpoint's own training split, else the
defaults. An empty test split, one that overlaps what a checkpoint was trained or validated on,
or one that gives no next-item prediction at all is an `InputError` (exit code 2, one line
naming the cause and the option that fixes it), never a table of n/a.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import typer

from behavior_stream.cli.errors import InputError
from behavior_stream.data.loaders import Format, load_events
from behavior_stream.data.splits import EvalSequence, SplitUnit, default_split_unit, time_split
from behavior_stream.schema.events import Event
from behavior_stream.schema.vocab import ItemVocab

log = logging.getLogger(__name__)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


@dataclass(frozen=True)
class TrainedSplit:
    """What a checkpoint's metadata records about the split it was trained on (`training.loop`)."""

    name: str  # the checkpoint's path, for messages
    valid_frac: float | None
    test_frac: float | None
    unit: str | None
    events: int | None  # train + valid + test events it split, when recorded
    test_path: str | None  # the separate test file it was trained with (`train --test`)

    @classmethod
    def of(cls, name: str, metadata: dict[str, Any]) -> TrainedSplit:
        """Read from checkpoint metadata; anything not recorded (an older or hand-made checkpoint) is None."""
        config = metadata.get("train_config") or {}
        counts = metadata.get("split") or {}
        test_path = (metadata.get("dataset") or {}).get("test_path")
        # With a separate test file, DATA was split into train and valid only (test fraction 0).
        parts = [counts.get(key) for key in ("train", "valid", *(() if test_path else ("test",)))]
        sizes = [n for n in parts if isinstance(n, int)]
        return cls(
            name=name,
            valid_frac=config.get("valid_frac"),
            test_frac=config.get("test_frac"),
            unit=config.get("split_unit"),
            events=sum(sizes) if len(sizes) == len(parts) else None,
            test_path=test_path,
        )

    @property
    def recorded(self) -> bool:
        """Whether the metadata holds the whole split rule (fractions and unit)."""
        return None not in (self.valid_frac, self.test_frac, self.unit)


def split_settings(
    train_config: dict[str, Any],
    valid_frac: float | None,
    test_frac: float | None,
    unit: str | None,
    fmt: Format,
) -> tuple[float, float, SplitUnit]:
    """CLI values, else the checkpoint's training split, else the defaults. Whether the chosen split
    overlaps the checkpoint's training data is checked on the data (`check_test_split`)."""
    for value, option in ((valid_frac, "--valid-frac"), (test_frac, "--test-frac")):
        if value is not None and not 0 <= value < 1:
            raise typer.BadParameter(
                f"must be a share of the events, 0 <= x < 1, got {value:g}", param_hint=option
            )
    trained = (train_config.get("valid_frac"), train_config.get("test_frac"), train_config.get("split_unit"))
    chosen = (
        float(_first(valid_frac, trained[0], 0.1)),
        float(_first(test_frac, trained[1], 0.1)),
        str(_first(unit, trained[2], default_split_unit(fmt))),
    )
    if chosen[0] + chosen[1] >= 1 and (valid_frac is not None or test_frac is not None):
        raise typer.BadParameter(
            f"the validation and test shares must sum to less than 1, got {chosen[0]:g} + {chosen[1]:g}",
            param_hint="--valid-frac/--test-frac",
        )
    if chosen[2] not in get_args(SplitUnit):
        raise typer.BadParameter(f"unknown split unit {chosen[2]!r}", param_hint="--split-unit")
    return chosen[0], chosen[1], cast(SplitUnit, chosen[2])


def _fix_for_trained(trained: TrainedSplit, unit: str) -> str:
    """The option that gives a test split disjoint from what `trained` was fitted on (`unit`: the
    split unit chosen now; the same fraction by another unit holds other events)."""
    if trained.test_path:
        return f"pass --test {trained.test_path} (the test file it was trained with)"
    if trained.test_frac:
        same_unit = "" if unit == trained.unit else f" with --split-unit {trained.unit}"
        return (
            f"pass --test-frac {trained.test_frac:g} (its held-out share) or less{same_unit}, or --test FILE"
        )
    return "pass --test-frac with the share of DATA after the data it trained on, or --test FILE"


def check_test_split(
    data: Path,
    events: Sequence[Event],
    split: tuple[float, float, SplitUnit],
    test_events: Sequence[Event],
    trained: Sequence[TrainedSplit],
    frac_given: bool,
) -> list[str]:
    """Raise `InputError` when the time split of DATA leaves no test events or puts events a
    checkpoint was trained or validated on into the test part; returns one note per checkpoint
    saying whether that was verified (it can be only when the checkpoint split these very events)."""
    test_frac, unit = split[1:]
    if not test_events:
        source = [t for t in trained if not frac_given and t.test_frac == test_frac]
        if source:
            cause = f"checkpoint {source[0].name} was trained with test fraction {test_frac:g} (reused here)"
            raise InputError(
                str(data), f"the test split is empty: {cause}; {_fix_for_trained(source[0], unit)}"
            )
        if test_frac == 0:
            raise InputError(
                str(data), "the test split is empty (--test-frac 0); pass --test-frac > 0 or --test FILE"
            )
        raise InputError(
            str(data),
            f"the test split is empty: a test fraction of {test_frac:g} of {len(events):,} events "
            f"({unit} split) holds none; raise --test-frac or pass --test FILE",
        )
    notes = []
    held_out = {id(e) for e in test_events}
    for t in trained:
        if not t.recorded or t.events != len(events):
            notes.append(
                f"{t.name}: not checked for overlap (it recorded a split of "
                f"{'unknown' if t.events is None else f'{t.events:,}'} events, DATA has {len(events):,})"
            )
            if (t.valid_frac, t.test_frac, t.unit) != split:
                log.warning("test split may overlap the training data of %s", notes[-1])
            continue
        # The checkpoint split these very events: its split, recomputed, is exactly what it saw.
        rule = (cast(float, t.valid_frac), cast(float, t.test_frac), cast(SplitUnit, t.unit))
        parts = time_split(events, *rule)
        seen = sum(id(e) in held_out for e in (*parts.train, *parts.valid))
        if seen:
            # Fitted on all of DATA: no fraction of it is new to the model, only a later file is.
            fix = (
                "it trained on all of DATA: pass --test FILE with events after it, or evaluate a checkpoint "
                "trained with --test-frac > 0"
                if not rule[1] and not t.test_path
                else _fix_for_trained(t, unit)
            )
            raise InputError(
                str(data),
                f"the test split overlaps checkpoint {t.name}'s training data: {seen:,} of "
                f"{len(test_events):,} test events were in its training or validation part (it split DATA "
                f"with valid {rule[0]:g}, test {rule[1]:g}, unit {rule[2]}); {fix}",
            )
        notes.append(f"{t.name}: checked, no test event was in its training or validation part")
    return notes


def history_and_test(
    data: Path,
    fmt: Format,
    test: Path | None,
    purchases: Path | None,
    split: tuple[float, float, SplitUnit],
    trained: Sequence[TrainedSplit] = (),
    frac_given: bool = True,
) -> tuple[list[Event], list[Event], dict[str, str], dict[str, Any]]:
    """(history, test events, item -> category, dataset description): the training split's parts, or
    DATA + the test file. Raises `InputError` for an empty test part or one that overlaps the data a
    checkpoint in `trained` was fitted on (`frac_given`: whether --test-frac was on the command line)."""
    loaded = load_events(data, fmt, purchases=purchases)
    if not loaded.events:
        raise InputError(str(data), f"no valid events ({loaded.report.summary()})")
    categories = dict(loaded.categories)
    dataset: dict[str, Any] = {"path": str(data), "format": fmt, "load": loaded.report.summary()}
    if test is not None:
        test_loaded = load_events(test, fmt)
        if not test_loaded.events:
            raise InputError(str(test), f"no valid test events ({test_loaded.report.summary()})")
        history, test_events = loaded.events, test_loaded.events
        categories |= test_loaded.categories
        dataset["test_path"] = str(test)
    else:
        parts = time_split(loaded.events, *split)
        history, test_events = [*parts.train, *parts.valid], parts.test
        notes = check_test_split(data, loaded.events, split, test_events, trained, frac_given)
        dataset["split"] = {
            "valid_frac": split[0],
            "test_frac": split[1],
            "unit": split[2],
            "test_start_ms": parts.test_start_ms,
            **({"training_overlap": notes} if notes else {}),
        }
    dataset |= {"history_events": len(history), "test_events": len(test_events)}
    return history, test_events, categories, dataset


def require_predictions(
    data: Path,
    sequences: Sequence[EvalSequence],
    vocab: ItemVocab,
    session_gap_ms: int,
    drop_unseen: bool,
    model: str | None = None,
) -> None:
    """Raise `InputError` when the test sequences give no next-item prediction at all (a table of n/a
    would follow); `model` names the checkpoint whose catalog was used, when there are two. The targets
    are counted as `evaluation.protocol.evaluate` counts them."""
    from behavior_stream.evaluation.ranking import drop_unseen_items, next_item_targets

    dropped = 0
    if drop_unseen:
        sequences, dropped = drop_unseen_items(sequences, vocab)
    targets = next_item_targets(sequences, vocab, session_gap_ms)
    if len(targets.items):
        return
    n_events = sum(len(s.events) for s in sequences)
    for_model = f" for {model}" if model else ""
    unseen = f"{targets.skipped_unseen:,} targets outside the model's catalog skipped"
    if dropped:
        unseen += f", {dropped:,} unseen-item events dropped (--gru4rec-compat)"
    raise InputError(
        str(data),
        f"0 next-item predictions{for_model} in {len(sequences):,} test sequences ({n_events:,} events; "
        f"a target is a user's 2nd or later test event with a catalog item; {unseen}); pass a larger "
        "--test-frac, or --test FILE with longer test sequences of catalog items",
    )

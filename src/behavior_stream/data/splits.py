"""Time-based train/valid/test splits, per-user grouping, and the evaluation sequences built from them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal, get_args

import numpy as np

from behavior_stream.data.loaders import Format
from behavior_stream.schema.events import Event

SplitUnit = Literal["event", "sequence"]

_by_ts = attrgetter("ts")


@dataclass(frozen=True)
class EvalSequence:
    """One test sequence: `context` is the history before it (may be empty), `events` the test part."""

    key: str
    context: tuple[Event, ...]
    events: tuple[Event, ...]


def group_by_user(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events per user, users in first-appearance order, each list in input order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.user_id, []).append(event)
    return groups


@dataclass(frozen=True)
class Split:
    """Train/valid/test events (time order) and the thresholds that separated them."""

    train: list[Event]
    valid: list[Event]
    test: list[Event]
    valid_start_ms: int
    test_start_ms: int


def default_split_unit(fmt: Format) -> SplitUnit:
    """Session datasets are split by whole sessions; long-lived user histories by event time."""
    return "sequence" if fmt in ("diginetica", "gru4rec") else "event"


def _thresholds(sorted_ts: np.ndarray, valid_frac: float, test_frac: float) -> tuple[int, int]:
    """(valid_start, test_start): the ts at the (1 - valid - test) and (1 - test) quantiles."""
    n = len(sorted_ts)
    n_test = round(n * test_frac)
    n_held = max(round(n * (valid_frac + test_frac)), n_test)
    # An empty part gets a threshold past every timestamp, so nothing lands in it.
    test_start = int(sorted_ts[n - n_test]) if n_test else int(sorted_ts[-1]) + 1
    valid_start = int(sorted_ts[n - n_held]) if n_held > n_test else test_start
    return valid_start, test_start


def time_split(
    events: Sequence[Event], valid_frac: float = 0.1, test_frac: float = 0.1, unit: SplitUnit = "event"
) -> Split:
    """Split by time. unit="event": cut at ts quantiles, so a user's history spans parts.
    unit="sequence": each user's whole sequence goes to the part its last event falls in
    (GRU4Rec-style session split), quantiles taken over sequences."""
    if not events:
        raise ValueError("cannot split an empty event list")
    if valid_frac < 0 or test_frac < 0 or valid_frac + test_frac >= 1:
        raise ValueError(f"need 0 <= valid_frac, test_frac and a sum < 1, got {valid_frac}, {test_frac}")
    if unit not in get_args(SplitUnit):
        raise ValueError(f"unknown split unit {unit!r}; expected one of {get_args(SplitUnit)}")
    ordered = sorted(events, key=_by_ts)
    if unit == "event":
        # (n_events,) the time each event is judged by: its own
        part_ts = np.fromiter((e.ts for e in ordered), dtype=np.int64, count=len(ordered))
        valid_start, test_start = _thresholds(part_ts, valid_frac, test_frac)
    else:
        last = {user: seq[-1].ts for user, seq in group_by_user(ordered).items()}
        ends = np.sort(np.fromiter(last.values(), dtype=np.int64, count=len(last)))  # (n_users,)
        valid_start, test_start = _thresholds(ends, valid_frac, test_frac)
        # (n_events,) the time each event is judged by: its sequence's end
        part_ts = np.fromiter((last[e.user_id] for e in ordered), dtype=np.int64, count=len(ordered))
    parts: tuple[list[Event], list[Event], list[Event]] = ([], [], [])
    for event, t in zip(ordered, part_ts.tolist(), strict=True):
        parts[2 if t >= test_start else 1 if t >= valid_start else 0].append(event)
    return Split(*parts, valid_start_ms=valid_start, test_start_ms=test_start)


def eval_sequences(history: Sequence[Event], test: Sequence[Event]) -> list[EvalSequence]:
    """One sequence per user in `test` (first-appearance order): context = the user's `history`
    events in time order, events = the user's test events. Raises if the context overlaps the test."""
    contexts = group_by_user(sorted(history, key=_by_ts))
    sequences = []
    for user, events in group_by_user(sorted(test, key=_by_ts)).items():
        context = contexts.get(user, [])
        if context and context[-1].ts > events[0].ts:
            raise ValueError(
                f"user {user!r}: history event at ts {context[-1].ts} is after the first test event "
                f"at ts {events[0].ts}; pass only events before the test period as history"
            )
        sequences.append(EvalSequence(user, tuple(context), tuple(events)))
    return sequences

"""Measuring a consumer's rate from the outside: progress samples, first to last event, time caps.

Every design is timed the same way: from the first event it handled to the last one it had
handled when the run ended (all events, or the time cap), so start-up never counts.
A subprocess that is not our worker reports progress through a small JSON file written by
`ProgressFile`; our worker is polled through its /metrics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

Sample = tuple[int, float]  # (events handled so far, wall-clock time when that count was reached)


@dataclass(frozen=True)
class Rate:
    """Events handled between the first and the last observed event."""

    events: int
    seconds: float
    complete: bool  # every expected event was handled before the cap

    @property
    def per_s(self) -> float:
        """Events per second (0 when nothing was measured)."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def figures(self, prefix: str) -> dict[str, float | bool]:
        """`<prefix>` (events/s) plus its events, seconds and completeness, for the JSON line."""
        return {
            prefix: round(self.per_s, 1),
            f"{prefix}.events": self.events,
            f"{prefix}.seconds": round(self.seconds, 3),
            f"{prefix}.complete": self.complete,
        }


def watch(
    sample: Callable[[], Sample | None],
    target: int,
    cap_s: float,
    start_cap_s: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.2,
) -> Rate:
    """Poll `sample` until `target` events, `cap_s` after the first event, or a stall; the rate.

    `sample` returns None while the process cannot answer yet (starting up). The first sample
    with events counts as the start, so a sample's own timestamp must be when its count was reached.
    """
    started = time.monotonic()
    first: Sample | None = None
    last: Sample | None = None
    stalled_since = time.monotonic()
    while True:
        if not alive():
            raise RuntimeError("the measured process exited")
        now = time.monotonic()
        got = sample()
        if got is not None and got[0] > 0:
            if first is None:
                first = got
            if last is None or got[0] > last[0]:
                last, stalled_since = got, now
            if last[0] >= target or last[1] - first[1] >= cap_s:
                break
            if now - stalled_since > max(15.0, cap_s / 2):
                log.warning(
                    "no progress for %.0fs at %d/%d events; stopping", now - stalled_since, last[0], target
                )
                break
        elif now - started > start_cap_s:
            raise TimeoutError(f"no event handled within {start_cap_s:.0f}s")
        time.sleep(interval)
    assert first is not None and last is not None
    # The first sample's events were handled before the clock started: count only those after.
    return Rate(last[0] - first[0], last[1] - first[1], last[0] >= target)


class ProgressFile:
    """Child side: count handled events; publish (count, time) every `every` events or `interval` s."""

    def __init__(self, path: Path, target: int, every: int = 2000, interval: float = 0.2) -> None:
        self.path, self.target, self.every, self.interval = path, target, every, interval
        self.count = 0
        self._next = 1  # publish the very first event: it starts the clock
        self._due = 0.0

    def add(self, n: int = 1) -> None:
        """Record `n` more handled events."""
        self.count += n
        now = time.time()
        if self.count >= self._next or self.count >= self.target or now >= self._due:
            self._next, self._due = self.count + self.every, now + self.interval
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"count": self.count, "time": now}))
            os.replace(tmp, self.path)


def read_progress(path: Path) -> Sample | None:
    """Parent side: the last published (count, time), None before the first."""
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return int(data["count"]), float(data["time"])

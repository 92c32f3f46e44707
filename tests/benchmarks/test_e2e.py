"""The end-to-end latency match: an event is readable with the first output of its user that has
seen it (`events_seen` at least its count), whatever order the outputs were read in."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.e2e import Latencies, match
from benchmarks.report import latency_lines


def test_each_event_is_matched_to_the_first_output_covering_it() -> None:
    sent = {("a", 1): 10.0, ("a", 2): 10.5, ("a", 3): 11.0, ("b", 1): 10.2, ("c", 1): 10.3}
    # User a: one output for its first two events (one batch), then one for the third; the
    # read order is shuffled. User c's event has no output yet.
    readable = {"a": [(3, 11.02), (2, 10.6)], "b": [(1, 10.21)]}
    got = sorted(round(v, 3) for v in match(sent, readable))
    assert got == sorted([0.6, 0.1, 0.02, 0.01])
    result = Latencies(np.asarray(got), sent=len(sent), send_seconds=1.0)
    assert result.unmatched == 1
    assert result.quantile(0.5) == pytest.approx(0.02)  # a sample value, not an interpolation
    assert result.quantile(1.0) == pytest.approx(0.6)


def test_the_latency_table_puts_the_relay_floor_beside_each_load() -> None:
    figures: dict[str, float | bool] = {
        "latency.10pct.offered_per_s": 767.0,
        "latency.10pct.p50_ms": 24.3,
        "latency.10pct.p95_ms": 40.6,
        "latency.10pct.p99_ms": 50.3,
        "latency.10pct.max_ms": 74.9,
        "latency.10pct.worker_p50_ms": 16.4,
        "latency.10pct.worker_p99_ms": 44.6,
        "latency.10pct.floor_p50_ms": 8.68,
        "latency.10pct.floor_p99_ms": 16.1,
    }
    header, _, row = latency_lines(figures)
    assert "floor (relay) p50 ms" in header and "floor (relay) p99 ms" in header
    assert row.split() == ["10%", "767", "24.3", "40.6", "50.3", "74.9", "16.4", "44.6", "8.68", "16.1"]

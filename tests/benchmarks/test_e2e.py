"""The end-to-end latency match: an event is readable with the first output of its user that has
seen it (`events_seen` at least its count), whatever order the outputs were read in."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.e2e import Latencies, match


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

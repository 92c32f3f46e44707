"""The check every crash test ends with: a last worker catches up, and its outputs are exactly
what an offline replay of the same events gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import orjson

from behavior_stream.schema.events import Event
from behavior_stream.stream.core.engine import ModelEngine
from behavior_stream.stream.core.offline import replay_states, representations
from behavior_stream.stream.runtime.settings import Settings
from tests.streamkit import latest_representations, read_topic, wait_until


def assert_caught_up_and_exact(
    settings: Settings, events: list[Event], checkpoint: Path, timeout_s: float, interval_s: float
) -> None:
    """Wait until every user's latest representation has seen all their events, then assert:
    each event applied exactly once, vectors equal the offline replay's (1e-4), and each user's
    last event has its recommendation (no batch was applied without its outputs)."""
    per_user = Counter(e.user_id for e in events)

    # Done when every user's latest output has seen at least all of their events (the
    # recovered state alone, visible in the users gauge, says nothing about the backlog).
    def caught_up() -> bool:
        last = latest_representations(settings)
        return len(last) == len(per_user) and all(r["events_seen"] >= per_user[u] for u, r in last.items())

    wait_until(caught_up, timeout_s, "the worker did not catch up", interval=interval_s)
    last = latest_representations(settings)
    engine = ModelEngine.from_checkpoint(checkpoint)
    expected = representations(replay_states(events, engine), engine)
    assert set(last) == set(expected)
    assert all(last[u]["events_seen"] == per_user[u] for u in expected), "an event was lost or applied twice"
    worst = max(float(np.abs(np.asarray(last[u]["vector"]) - expected[u]).max()) for u in expected)
    assert worst <= 1e-4, worst
    covered: dict[str, set[str]] = {}
    for rec in read_topic(settings, settings.recommendations_topic):
        msg = orjson.loads(rec.value)
        covered.setdefault(msg["user_id"], set()).add(msg["event_id"])
    final_event = {e.user_id: e.event_id for e in events}
    missing = [u for u in expected if final_event[u] not in covered.get(u, set())]
    assert not missing, f"{len(missing)} users' last events without a recommendation"

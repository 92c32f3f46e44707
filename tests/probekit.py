"""A small probe-able data set: users with several sessions of history and a test period, item categories."""

from __future__ import annotations

import random

from behavior_stream.schema.events import Event
from tests.seqkit import CATALOG, user_sequence

# Categories for the catalog and the OOV items alike (labels may be outside the model's catalog).
CATEGORIES = {item: f"cat{i % 3}" for i, item in enumerate(CATALOG)}


def history_and_test(n_users: int = 40, n_events: int = 24, seed: int = 3) -> tuple[list[Event], list[Event]]:
    """Each user's first two thirds of events are history, the rest the test period (time order kept)."""
    rng = random.Random(seed)
    history: list[Event] = []
    test: list[Event] = []
    for u in range(n_users):
        events = user_sequence(f"user{u}", n_events, rng)
        cut = 2 * n_events // 3
        history += events[:cut]
        test += events[cut:]
    return history, test

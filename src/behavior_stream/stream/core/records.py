"""Plain record types that cross between the Faust runtime and the processing core."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed Kafka record, as the core sees it (no Faust types)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received: float  # wall-clock seconds when the consumer received it (for latency)


@dataclass(frozen=True, slots=True)
class OutMessage:
    """A record to produce; `partition` None means: choose by key."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


@dataclass
class BatchStats:
    """What one batch did, for metrics and tests."""

    records: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    late: int = 0
    rerouted: int = 0
    users: int = 0
    steps: int = 0
    recommendations: int = 0
    # Online evaluation, per variant: rank of each applied item in the user's previous feed
    # (None = not in it), the feed's event-time age then, and whether purchases were recommended.
    ranks: list[tuple[str, int | None]] = field(default_factory=list)
    rank_users: list[str] = field(default_factory=list)  # the user of each `ranks` entry (A/B clusters)
    feed_ages: list[tuple[str, float]] = field(default_factory=list)
    model_ranks: list[tuple[str, int]] = field(default_factory=list)  # per event, from the prior state
    purchases: list[tuple[str, bool]] = field(default_factory=list)
    recommendations_by_variant: Counter[str] = field(default_factory=Counter)
    step_seconds: float = 0.0
    score_seconds: float = 0.0
    received: list[float] = field(default_factory=list)  # receive times of records that produced output
    intents: list[float] = field(default_factory=list)  # purchase probabilities served (intent.py)


@dataclass
class BatchResult:
    """Outputs of `process_batch`: messages to send and state values to write (by partition)."""

    messages: list[OutMessage] = field(default_factory=list)
    state_writes: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> offset
    stats: BatchStats = field(default_factory=BatchStats)

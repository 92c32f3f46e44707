"""What a benchmark run measures and how big it is: one frozen `BenchConfig`, full or quick."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from behavior_stream.nn.config import Cell

# In run order: the target ratios' figures first, the optional extras last (see `BenchConfig`).
Phase = Literal[
    "ceiling", "faust", "naive", "quix", "worker", "core", "latency",
    "scale", "state", "rss", "profile", "training", "hostile", "recovery", "endpoints",
]  # fmt: skip
PHASES: tuple[Phase, ...] = get_args(Phase)
BROKER_PHASES = frozenset(
    {"ceiling", "faust", "naive", "quix", "worker", "latency", "scale", "rss", "recovery", "endpoints"}
)
Catalog = Literal["small", "large"]
# Phases that start after this many seconds are skipped: `make bench` must end within 10 minutes.
BUDGET_S = 480.0
SHARED_DATA_ENV = "BEHAVIOR_STREAM_SHARED_DATA"
# The public samples beside the repository, as in tests/conftest.py.
DEFAULT_SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class RunSpec:
    """One configuration of the worker: cell type, catalog size and exact or HNSW scoring."""

    cell: Cell
    catalog: Catalog
    approximate: bool

    def name(self, config: BenchConfig) -> str:
        """A readable label such as `gru-100k-hnsw`."""
        n = config.items if self.catalog == "small" else config.large_catalog
        size = f"{n // 1000}k" if n >= 1000 else str(n)
        return f"{self.cell}-{size}-{'hnsw' if self.approximate else 'exact'}"


# The configuration the ratio targets refer to: large catalog, approximate scoring.
PRIMARY = RunSpec("gru", "large", True)
# For designs that never score (baselines): exact, so no HNSW index is built at their start.
NO_SCORING = RunSpec("gru", "large", False)
WORKER_RUNS: tuple[RunSpec, ...] = (
    RunSpec("gru", "small", False),
    RunSpec("gru", "large", False),
    PRIMARY,
    RunSpec("lstm", "large", True),
)
# The core alone is measured for the GRU runs only: an LSTM core would need one more in-process
# HNSW build over the large catalog, 10-40 s of the 10-minute budget on two shared cores.
CORE_RUNS: tuple[RunSpec, ...] = tuple(s for s in WORKER_RUNS if s.cell == "gru")
# Scale-out runs three workers; exact scoring over the small catalog spares three HNSW builds.
SCALE_RUN = RunSpec("gru", "small", False)


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and time caps of every phase; `quick()` is the small variant for development and CI."""

    workdir: Path = Path("runs/bench")
    phases: frozenset[Phase] = field(default_factory=lambda: frozenset(PHASES))
    users: int = 20_000
    items: int = 10_000
    events: int = 200_000
    large_catalog: int = 100_000
    seed: int = 7
    partitions: int = 4
    max_batch: int = 1000
    runs: tuple[RunSpec, ...] = WORKER_RUNS
    core_runs: tuple[RunSpec, ...] = CORE_RUNS
    # Throughput is measured over the first `run_cap_s` seconds of events (or all events, if
    # sooner): a steady rate is reached in seconds, and the whole run must fit in 10 minutes.
    run_cap_s: float = 12.0
    slow_cap_s: float = 10.0  # window of the naive design and the Quix peer: slow or steady
    core_cap_s: float = 10.0
    # The scale topic holds the log this many times over: on a quiet machine two workers drained
    # one copy in 9 s, inside `run_cap_s`, and a drained topic times its tail (one worker done,
    # the other still on its last partition), not the group's rate.
    scale_laps: int = 2
    start_cap_s: float = 120.0  # longest wait for a process to start consuming (HNSW build included)
    latency_loads: tuple[float, ...] = (0.1, 0.25, 0.5, 0.9)
    latency_s: float = 15.0
    floor_s: float = 5.0  # per load, through the no-work relay (steady: a shorter window will do)
    memory_users: int = 50_000  # new users for the RSS phase; the figure is scaled to 100k
    train_epochs: int = 2
    train_rows: int | None = None  # None = the whole Taobao sample
    eval_predictions: int = 10_000
    profile_events: int = 20_000
    quick_mode: bool = False

    @property
    def ann_threshold(self) -> int:
        """Catalog size above which the HNSW runs score approximately (between the two catalogs)."""
        return (self.items + self.large_catalog) // 2

    @property
    def shared_data(self) -> Path:
        """The public samples directory (`BEHAVIOR_STREAM_SHARED_DATA` overrides the default)."""
        return Path(os.environ.get(SHARED_DATA_ENV, str(DEFAULT_SHARED_DATA)))

    def wants(self, phase: Phase) -> bool:
        """Whether this run includes `phase`."""
        return phase in self.phases

    def needs_broker(self) -> bool:
        """Whether any selected phase needs the embedded broker."""
        return bool(self.phases & BROKER_PHASES)

    def quick(self) -> BenchConfig:
        """A few-thousand-event version of this config: minutes become seconds, figures become rough."""
        return replace(
            self,
            users=1_000,
            items=2_000,
            events=5_000,
            large_catalog=20_000,
            run_cap_s=10.0,
            slow_cap_s=5.0,
            core_cap_s=5.0,
            latency_s=4.0,
            floor_s=2.0,
            memory_users=3_000,
            train_epochs=1,
            train_rows=20_000,
            eval_predictions=1_000,
            profile_events=2_000,
            quick_mode=True,
        )


def parse_phases(only: str | None, skip: str | None) -> frozenset[Phase]:
    """The phases selected by comma-separated `only` / `skip` lists; unknown names are an error."""

    def names(text: str) -> set[Phase]:
        out: set[Phase] = set()
        for part in (p.strip() for p in text.split(",")):
            if part not in PHASES:
                raise ValueError(f"unknown phase {part!r}; known: {', '.join(PHASES)}")
            out.add(part)
        return out

    chosen: set[Phase] = names(only) if only else set(PHASES)
    if skip:
        chosen -= names(skip)
    return frozenset(chosen)

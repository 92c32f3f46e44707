"""Where a worker's per-event time goes: framework, decode/validate, step, scoring, state, outputs, produce.

The model step and scoring come from the core's own `BatchStats` timers (no profiler). The rest
of the core is split by a cProfile run of `process_batch` over the same records, in proportion,
since the profiler inflates Python calls more than tensor work. Producing is timed by sending
the core's own outputs and state records through `BatchSender`; framework is what remains of
the worker's measured time per event.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import pstats
import time
from collections.abc import Sequence
from dataclasses import dataclass

from behavior_stream.stream.commit.sender import BatchSender
from behavior_stream.stream.core.process import process_batch
from behavior_stream.stream.core.records import BatchResult, OutMessage
from behavior_stream.stream.runtime.kafka import client_options, ensure_topics
from behavior_stream.stream.runtime.settings import Settings
from benchmarks.config import RunSpec
from benchmarks.worker_runs import WORKER_THREADS, compute_threads, core_context, input_records
from benchmarks.workload import Workload, drop_topics

log = logging.getLogger(__name__)

# Profiled functions (file suffix, name) -> component; everything else in the core is "bookkeeping".
COMPONENTS = {
    ("schema/events.py", "parse_event"): "decode_validate",
    ("stream/core/state.py", "encode_state"): "state_codec",
    ("stream/core/state.py", "decode_state"): "state_codec",
    ("stream/core/outputs.py", "user_messages"): "output_build",
    # What the core's step and score timers cover (stats.step_seconds, stats.score_seconds): the
    # step, the batch's ranking (feeds and stepped searches in one index call), the feeds.
    ("stream/core/engine.py", "step_states"): "_tensor",
    ("stream/core/scenarios.py", "rank_batch"): "_tensor",
    ("stream/core/engine.py", "recommend"): "_tensor",
    # The search and cart records (the cart scoring included; the searches are ranked in
    # rank_batch): the worker's settings turn them on, so the core-alone context does too.
    ("stream/core/scenarios.py", "scenario_outputs"): "scenarios",
}


@dataclass(frozen=True)
class Breakdown:
    """Microseconds per event of each part of the worker's work."""

    events: int
    us: dict[str, float]

    def figures(self) -> dict[str, float]:
        """Flat figures for the JSON line: each part in us/event and its share of the whole."""
        whole = sum(v for v in self.us.values() if v > 0)
        out: dict[str, float] = {"profile.events": self.events}
        for part, v in self.us.items():
            out[f"profile.{part}_us"] = round(v, 2)
            out[f"profile.{part}_share"] = round(max(v, 0.0) / whole, 3) if whole else 0.0
        return out


def _run(workload: Workload, spec: RunSpec, n: int) -> tuple[float, float, float, list[BatchResult]]:
    """(seconds, step seconds, score seconds, results) of the core over the first `n` records."""
    ctx = core_context(workload, spec)
    records = input_records(workload, workload.records[:n])
    size = workload.config.max_batch
    results = []
    start = time.perf_counter()
    for i in range(0, len(records), size):
        results.append(process_batch(records[i : i + size], ctx))
    seconds = time.perf_counter() - start
    step = sum(r.stats.step_seconds for r in results)
    score = sum(r.stats.score_seconds for r in results)
    return seconds, step, score, results


def _profiled_parts(workload: Workload, spec: RunSpec, n: int) -> dict[str, float]:
    """Cumulative seconds of each named component in a cProfile run of the core."""
    profiler = cProfile.Profile()
    profiler.enable()
    _run(workload, spec, n)
    profiler.disable()
    parts = dict.fromkeys(set(COMPONENTS.values()), 0.0)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = 0.0
    for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        if name == "process_batch" and path.endswith("stream/core/process.py"):
            total += cumulative
        for (suffix, func), part in COMPONENTS.items():
            if name == func and path.endswith(suffix):
                parts[part] += cumulative
    parts["core_total"] = total
    return parts


async def _produce_seconds(settings: Settings, results: Sequence[BatchResult], tag: str) -> float:
    """Time to send every batch's outputs and state records, as `Committer.flush` does (no fences)."""
    topics = {m.topic: f"prof-{m.topic}-{tag}" for r in results for m in r.messages}
    changelog = f"prof-changelog-{tag}"
    await ensure_topics(settings, [*topics.values(), changelog])
    sender = BatchSender(**client_options(settings))
    await sender.start()
    try:
        start = time.perf_counter()
        for r in results:
            await sender.send_messages([OutMessage(topics[m.topic], m.key, m.value) for m in r.messages])
            state = [(changelog, p, k, v) for p, writes in r.state_writes.items() for k, v in writes.items()]
            await sender.send(state)
        return time.perf_counter() - start
    finally:
        await sender.stop()


def profile_worker(workload: Workload, spec: RunSpec, worker_rate: float | None) -> Breakdown:
    """The per-event breakdown of `spec`; framework only when the worker's rate is known."""
    n = min(workload.config.profile_events, len(workload.records))
    with compute_threads(WORKER_THREADS):
        # The faster of two runs: on a shared machine the slower one measures the neighbours.
        seconds, step, score, results = min(
            _run(workload, spec, n), _run(workload, spec, n), key=lambda r: r[0]
        )
        parts = _profiled_parts(workload, spec, n)
    # Step and scoring come from the unprofiled timers; the profile only splits the Python rest.
    python_profiled = parts.pop("core_total") - parts.pop("_tensor")
    rest = max(seconds - step - score, 0.0)  # unprofiled Python part of the core
    scale = rest / python_profiled if python_profiled > 0 else 0.0
    us = {"model_step": step, "scoring": score}
    for part, value in parts.items():
        us[part] = value * scale
    us["bookkeeping"] = rest - sum(value * scale for value in parts.values())
    if workload.broker is not None:
        settings = Settings(broker=workload.broker.url, partitions=workload.config.partitions)
        us["produce"] = asyncio.run(_produce_seconds(settings, results, workload.tag))
        drop_topics(workload, "prof-")
    us = {k: v / n * 1e6 for k, v in us.items()}
    if worker_rate:
        us["framework"] = 1e6 / worker_rate - sum(us.values())
    return Breakdown(n, us)

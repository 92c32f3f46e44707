"""Valid-traffic throughput with hostile records mixed in, against clean traffic (core alone)."""

from __future__ import annotations

import random
import time

from behavior_stream.stream.core.process import process_batch
from behavior_stream.stream.core.records import InputRecord
from behavior_stream.testing.hostile import hostile_records
from benchmarks.config import PRIMARY
from benchmarks.report import Figures
from benchmarks.worker_runs import core_context, input_records
from benchmarks.workload import Workload


def _valid_rate(workload: Workload, records: list[InputRecord]) -> tuple[float, int]:
    """Valid events applied per second by `process_batch` over `records` (fresh state)."""
    ctx = core_context(workload, PRIMARY)
    size = workload.config.max_batch
    applied = 0
    start = time.perf_counter()
    for i in range(0, len(records), size):
        applied += sum(process_batch(records[i : i + size], ctx).stats.events_by_type.values())
    return applied / (time.perf_counter() - start), applied


def measure_hostile(workload: Workload, n_valid: int = 20_000, seed: int = 0) -> Figures:
    """Rates on n_valid clean records, then on the same records with one hostile record per two."""
    valid = list(workload.records[:n_valid])
    mixed = list(valid)
    rng = random.Random(seed)
    for _, _, raw in hostile_records(n_valid // 2, seed):
        mixed.insert(rng.randrange(len(mixed) + 1), (valid[rng.randrange(len(valid))][0], raw))
    clean_rate, clean_n = _valid_rate(workload, input_records(workload, valid))
    mixed_rate, mixed_n = _valid_rate(workload, input_records(workload, mixed))
    return {
        "hostile.clean_valid_per_s": round(clean_rate, 1),
        "hostile.mixed_valid_per_s": round(mixed_rate, 1),
        "hostile.hostile_records": len(mixed) - len(valid),
        "hostile.valid_applied_equal": clean_n == mixed_n,
        "ratio.hostile_over_clean": round(mixed_rate / clean_rate, 3),
    }

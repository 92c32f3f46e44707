"""The benchmark run: every phase in order on one broker and one workload, figures into one dict.

A phase that fails is logged and recorded under `errors.<phase>`; the others still run, so one
broken measurement never loses the rest. Phases whose turn comes after `budget_s` are skipped
(and say so), which keeps `make bench` bounded on a slow machine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from behavior_stream.nn.config import Cell
from benchmarks.ceiling import measure_ceiling
from benchmarks.config import BUDGET_S, PRIMARY, SCALE_RUN, BenchConfig, Phase
from benchmarks.endpoints import measure_endpoints
from benchmarks.faust_baselines import measure_faust
from benchmarks.hostile_phase import measure_hostile
from benchmarks.latency import measure_latency
from benchmarks.memory import rss_growth, state_size
from benchmarks.profile import profile_worker
from benchmarks.quix_peer import measure_quix
from benchmarks.recovery import measure_recovery
from benchmarks.report import Figures
from benchmarks.training import measure_training
from benchmarks.worker_runs import WORKER_THREADS, measure_core, measure_scale, measure_worker
from benchmarks.workload import Workload, build_workload, start_broker

log = logging.getLogger(__name__)


@dataclass
class Suite:
    """A run in progress: the config, the shared workload and the figures so far."""

    config: BenchConfig
    budget_s: float = BUDGET_S
    figures: Figures = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def phase(self, name: Phase, body: Callable[[], Figures]) -> None:
        """Run one phase if selected and in budget; merge its figures, or record why it has none."""
        if not self.config.wants(name):
            return
        elapsed = time.monotonic() - self.started
        if elapsed > self.budget_s:
            log.warning("skipping %s: %.0fs elapsed, budget %.0fs", name, elapsed, self.budget_s)
            self.figures[f"skipped.{name}"] = "time budget"
            return
        log.info("phase %s ...", name)
        t0 = time.monotonic()
        try:
            self.figures.update(body())
        except Exception as exc:  # one broken phase must not lose the others' figures
            log.exception("phase %s failed", name)
            self.figures[f"errors.{name}"] = f"{type(exc).__name__}: {exc}"[:300]
        self.figures[f"phase_seconds.{name}"] = round(time.monotonic() - t0, 1)


def _faust(workload: Workload) -> Figures:
    out: Figures = {}
    for mode in ("take", "iterate"):
        out.update(measure_faust(workload, mode).figures(f"rate.faust_{mode}"))
    out["faust.best_mode"] = max(("take", "iterate"), key=lambda m: out[f"rate.faust_{m}"])
    return out


def _quix(workload: Workload) -> Figures:
    if importlib.util.find_spec("quixstreams") is None:
        raise RuntimeError("quixstreams is not installed: pip install -e '.[bench]'")
    out = measure_quix(workload, "state").figures("rate.quix")
    # The whole job per event (model step and scoring per event): what micro-batching is worth.
    out.update(measure_quix(workload, "whole").figures("rate.quix_whole"))
    return out


def _workers(workload: Workload) -> Figures:
    out: Figures = {}
    for spec in sorted(workload.config.runs, key=lambda s: s != PRIMARY):  # the primary first
        out.update(measure_worker(workload, spec).figures(f"rate.worker.{spec.name(workload.config)}"))
    return out


def _cores(workload: Workload) -> Figures:
    out: Figures = {}
    # The primary once more with torch and faiss on every core, as the core-alone phase ran before
    # issue 14: how much the thread count matters (the worker shares the cores with the broker).
    runs = [(spec, WORKER_THREADS, "core") for spec in workload.config.core_runs] + [
        (PRIMARY, os.cpu_count() or 1, "core_all_threads")
    ]
    for spec, threads, label in runs:
        run = measure_core(workload, spec, threads)
        name = spec.name(workload.config)
        out.update(run.rate.figures(f"rate.{label}.{name}"))
        out[f"{label}.{name}.step_s"] = round(run.step_seconds, 3)
        out[f"{label}.{name}.score_s"] = round(run.score_seconds, 3)
        out[f"{label}.{name}.cpu_us"] = round(run.cpu_seconds / max(run.rate.events, 1) * 1e6, 1)
    return out


def _latency(workload: Workload, figures: Figures) -> Figures:
    rate4 = figures.get(f"rate.worker.{PRIMARY.name(workload.config)}")
    if not rate4:
        raise RuntimeError("latency loads are fractions of the worker's rate: run the worker phase too")
    out: Figures = {}
    for result in measure_latency(workload, PRIMARY, rate4):
        out.update(result.figures())
    return out


def _scale(workload: Workload) -> Figures:
    out: Figures = {}
    for n in (1, 2):
        out.update(measure_scale(workload, SCALE_RUN, n).figures(f"rate.scale.{n}"))
    return out


def _states(workload: Workload) -> Figures:
    cells: tuple[Cell, ...] = ("gru", "lstm")
    return {k: v for cell in cells for k, v in state_size(workload, cell).figures().items()}


def _profile(workload: Workload, figures: Figures) -> Figures:
    key = f"rate.worker.{PRIMARY.name(workload.config)}"
    rate4, cpu_us = figures.get(key), figures.get(f"{key}.worker_cpu_us")
    out = profile_worker(workload, PRIMARY, rate4).figures()
    if rate4 and cpu_us:
        # The worker's CPU time over its wall time per event; the rest it spent waiting on I/O.
        out["profile.worker_busy_share"] = round(cpu_us * rate4 / 1e6, 3)
    return out


def _ratios(f: Figures, config: BenchConfig) -> None:
    """The ratios the targets compare: the worker (primary configuration) over each other design."""
    worker = f.get(f"rate.worker.{PRIMARY.name(config)}")
    faust = max(f.get("rate.faust_take") or 0.0, f.get("rate.faust_iterate") or 0.0)
    pairs = {
        "ratio.worker_over_faust": (worker, faust),
        "ratio.worker_over_naive": (worker, f.get("rate.naive")),
        "ratio.worker_over_quix": (worker, f.get("rate.quix")),
        "ratio.worker_over_quix_whole": (worker, f.get("rate.quix_whole")),
        "ratio.worker_over_ceiling": (worker, f.get("rate.ceiling")),
        "ratio.worker_over_core": (worker, f.get(f"rate.core.{PRIMARY.name(config)}")),
        "ratio.scale_2_over_1": (f.get("rate.scale.2"), f.get("rate.scale.1")),
    }
    for key, (a, b) in pairs.items():
        if a and b:
            f[key] = round(a / b, 3)
    worker_cpu = f.get(f"rate.worker.{PRIMARY.name(config)}.worker_cpu_us")
    core_cpu = f.get(f"core.{PRIMARY.name(config)}.cpu_us")
    if worker_cpu and core_cpu:
        # The worker's process (consumer thread included) against the core's CPU per event.
        f["ratio.worker_over_core_cpu"] = round(core_cpu / worker_cpu, 3)
    core = f.get(f"rate.core.{PRIMARY.name(config)}")
    if worker and core:
        # What the runtime (Kafka in and out, state, commits) adds to the core's time per event.
        f["runtime.per_event_us"] = round(1e6 / worker - 1e6 / core, 1)
        f["core.per_event_us"] = round(1e6 / core, 1)


def run_suite(config: BenchConfig, budget_s: float = BUDGET_S) -> Figures:
    """Run the selected phases in order of importance; returns every figure (tables: `benchmarks.report`)."""
    suite = Suite(config, budget_s)
    f = suite.figures
    f.update(
        {
            "meta.quick": config.quick_mode,
            "meta.cpus": os.cpu_count(),
            "meta.events": config.events,
            "meta.users": config.users,
            "meta.items": config.items,
            "meta.large_catalog": config.large_catalog,
            "meta.max_batch": config.max_batch,
            "meta.partitions": config.partitions,
            "meta.torch_threads": WORKER_THREADS,
            "meta.primary": PRIMARY.name(config),
        }
    )
    workload = build_workload(config)
    phases: list[tuple[Phase, Callable[[], Figures]]] = [
        ("ceiling", lambda: measure_ceiling(workload).figures("rate.ceiling")),
        ("faust", lambda: _faust(workload)),
        ("naive", lambda: measure_faust(workload, "naive").figures("rate.naive")),
        ("quix", lambda: _quix(workload)),
        ("worker", lambda: _workers(workload)),
        # Right after the worker: the worker / core ratio is a target, and on a shared machine
        # the nearer in time the two phases run, the more alike their conditions.
        ("core", lambda: _cores(workload)),
        ("latency", lambda: _latency(workload, f)),
        ("scale", lambda: _scale(workload)),
        ("state", lambda: _states(workload)),
        ("rss", lambda: rss_growth(workload).figures()),
        ("profile", lambda: _profile(workload, f)),
        ("training", lambda: measure_training(config).figures()),
        ("hostile", lambda: measure_hostile(workload)),
        ("recovery", lambda: measure_recovery(workload)),
        ("endpoints", lambda: measure_endpoints(workload)),
    ]
    try:
        if config.needs_broker():
            start_broker(workload)
        for name, body in phases:
            suite.phase(name, body)
    finally:
        if workload.broker is not None:
            workload.broker.stop()
    _ratios(f, config)
    f["meta.elapsed_s"] = round(time.monotonic() - suite.started, 1)
    return f

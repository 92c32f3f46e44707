"""The benchmark's output: a throughput table, a targets table (target / measured / pass), one JSON line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

Figures = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One goal of the issue, checked against a figure; `limit` None = reported only."""

    label: str
    key: str
    goal: str
    limit: float | None = None
    at_least: bool = True
    unit: str = ""

    def measured(self, figures: Figures) -> float | None:
        """The figure, None when its phase did not run."""
        value = figures.get(self.key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def passed(self, figures: Figures) -> bool | None:
        """True/False against the limit; None when not measured or reported only."""
        value = self.measured(figures)
        if value is None or self.limit is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit


ENDPOINTS = ("search", "search_rerank_100", "cart", "related", "related_user", "explain", "representation")

TARGETS: tuple[Target, ...] = (
    Target(
        "worker / trivial Faust (large catalog, HNSW)", "ratio.worker_over_faust", ">= 0.5", 0.5, unit="x"
    ),
    Target("worker / naive Faust design", "ratio.worker_over_naive", ">= 3", 3.0, unit="x"),
    Target("worker / raw aiokafka ceiling", "ratio.worker_over_ceiling", "reported", unit="x"),
    Target("worker / processing core alone", "ratio.worker_over_core", ">= 0.75", 0.75, unit="x"),
    # The same ratio from CPU time per event instead of wall time: on a shared machine the two
    # phases run at different loads, and CPU time moves much less with the neighbours than rate.
    Target("worker / core alone, by CPU time per event", "ratio.worker_over_core_cpu", "reported", unit="x"),
    Target("worker / Quix peer, no model", "ratio.worker_over_quix", ">= 1.0", 1.0, unit="x"),
    Target("worker / Quix peer, whole job per event", "ratio.worker_over_quix_whole", "reported", unit="x"),
    Target("runtime cost per event (worker - core)", "runtime.per_event_us", "reported", unit=" us"),
    *(
        Target(
            f"end-to-end p{q} at {load}% load",
            f"latency.{load}pct.p{q}_ms",
            f"<= {limit:.0f} ms",
            limit,
            False,
            " ms",
        )
        for load in (10, 25, 50, 90)
        for q, limit in ((50, 10.0), (99, 25.0))
    ),
    # The codec's bound at the defaults (GRU hidden 64, window 32, 8 ids each): `max_state_bytes`.
    Target(
        "state per user, GRU hidden 64 (max)",
        "state.gru.bytes_max",
        "<= 547 B (bound)",
        547.0,
        at_least=False,
        unit=" B",
    ),
    Target("state bound, GRU hidden 64", "state.gru.bytes_bound", "reported", unit=" B"),
    Target("two workers / one", "ratio.scale_2_over_1", ">= 1.8", 1.8, unit="x"),
    Target(
        "valid rate with 1 hostile per 2 valid / clean (core)",
        "ratio.hostile_over_clean",
        ">= 0.5",
        0.5,
        unit="x",
    ),
    Target("state per user, LSTM hidden 64 (max)", "state.lstm.bytes_max", "reported", unit=" B"),
    Target("state bound, LSTM hidden 64", "state.lstm.bytes_bound", "reported", unit=" B"),
    Target("worker RSS per 100k users", "rss.per_100k_users_mib", "reported", unit=" MiB"),
    Target("training examples/s (Taobao sample)", "train.examples_per_s", "reported"),
    Target("training wall time (Taobao sample)", "train.wall_s", "reported", unit=" s"),
    Target("evaluation time per 10k predictions", "eval.seconds_per_10k", "reported", unit=" s"),
    Target(
        "warm restart, 1M users, RocksDB store",
        "recovery.1m.rocksdb_warm.s",
        "<= 60 s",
        60.0,
        at_least=False,
        unit=" s",
    ),
    Target("restart, 1M users, memory store", "recovery.1m.memory_warm.s", "reported", unit=" s"),
    # Issue 16: each scenario endpoint over HTTP at 100k items (benchmarks/endpoints.py).
    *(
        Target(f"endpoint p99, {name}, 100k items", f"endpoint.{name}.p99_ms", "<= 20 ms", 20.0, False, " ms")
        for name in ENDPOINTS
    ),
)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + unit


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def throughput_lines(figures: Figures) -> list[str]:
    """One row per measured design: events/s, events counted, seconds, and whether all arrived."""
    rows = []
    for key, value in figures.items():
        if (
            key.startswith("rate.")
            and key.count(".") <= 2
            and not key.endswith((".events", ".seconds", ".complete"))
        ):
            rows.append(
                [
                    key.removeprefix("rate."),
                    _fmt(value),
                    _fmt(figures.get(f"{key}.events")),
                    f"{figures.get(f'{key}.seconds', 0):.2f}",
                    "yes" if figures.get(f"{key}.complete") else "capped",
                ]
            )
    return _table(["design", "events/s", "events", "seconds", "all events"], rows)


def target_lines(figures: Figures) -> list[str]:
    """The targets table."""
    rows = []
    for t in TARGETS:
        ok = t.passed(figures)
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        rows.append([t.label, t.goal, _fmt(t.measured(figures), t.unit), verdict])
    return _table(["target", "goal", "measured", "pass"], rows)


def latency_lines(figures: Figures) -> list[str]:
    """Latency quantiles at each offered load (empty when the latency phase did not run)."""
    rows = []
    for key in sorted(k for k in figures if k.startswith("latency.") and k.endswith(".offered_per_s")):
        tag = key.removesuffix(".offered_per_s")
        load = tag.removeprefix("latency.").removesuffix("pct") + "%"
        quantiles = [_fmt(figures.get(f"{tag}.p{q}_ms")) for q in (50, 95, 99)]
        worker = [_fmt(figures.get(f"{tag}.worker_p{q}_ms")) for q in (50, 99)]
        floor = [_fmt(figures.get(f"{tag}.floor_p{q}_ms")) for q in (50, 99)]
        top = _fmt(figures.get(f"{tag}.max_ms"))
        rows.append([load, _fmt(figures[key]), *quantiles, top, *worker, *floor])
    header = ["load", "offered ev/s", "e2e p50 ms", "e2e p95 ms", "e2e p99 ms", "e2e max ms"]
    extra = ["worker p50 ms", "worker p99 ms", "floor (relay) p50 ms", "floor (relay) p99 ms"]
    return _table([*header, *extra], rows) if rows else []


def profile_lines(figures: Figures) -> list[str]:
    """The worker's time per event by part, largest first (empty when the profile did not run)."""
    parts = [k.removeprefix("profile.").removesuffix("_us") for k in figures if k.startswith("profile.")]
    parts = [p for p in parts if f"profile.{p}_share" in figures]
    parts.sort(key=lambda p: -figures[f"profile.{p}_us"])
    rows = [[p, f"{figures[f'profile.{p}_us']:.1f}", f"{figures[f'profile.{p}_share']:.1%}"] for p in parts]
    return _table(["part of the worker", "us/event", "share"], rows) if rows else []


def recovery_lines(figures: Figures) -> list[str]:
    """Seconds from worker start to serving, per state size and store (empty when not run)."""
    kinds = ("memory_cold", "memory_warm", "rocksdb_cold", "rocksdb_warm")
    rows = []
    for key in sorted(k for k in figures if k.startswith("recovery.") and k.endswith(".changelog_mb")):
        size = key.removeprefix("recovery.").removesuffix(".changelog_mb")
        cells = []
        for kind in kinds:
            prefix = f"recovery.{size}.{kind}"
            seconds, capped = figures.get(f"{prefix}.s"), figures.get(f"{prefix}.capped_s")
            users = figures.get(f"{prefix}.users")
            cells.append(f"> {capped:.0f} ({users} users)" if capped else _fmt(seconds))
        rows.append([size, _fmt(figures[key]), *cells])
    header = ["users", "changelog MB", *(f"{k.replace('_', ' ')} s" for k in kinds)]
    return _table(header, rows) if rows else []


def report_lines(figures: Figures) -> list[str]:
    """Every table, separated by blank lines, then errors and skipped phases."""
    lines: list[str] = []
    for table in (
        throughput_lines(figures),
        latency_lines(figures),
        profile_lines(figures),
        recovery_lines(figures),
        target_lines(figures),
    ):
        if table:
            lines += ["", *table]
    lines += [f"{k}: {v}" for k, v in figures.items() if k.startswith(("errors.", "skipped."))]
    return lines


def json_line(figures: Figures) -> str:
    """Every figure as one line of JSON (NaN becomes null)."""
    return orjson.dumps(figures, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()

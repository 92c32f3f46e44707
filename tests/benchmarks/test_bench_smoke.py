"""Smoke test of the benchmark suite: tiny runs of the broker-free phases, checking the output's shape."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from benchmarks.__main__ import bench_command
from benchmarks.config import PRIMARY, BenchConfig, RunSpec, parse_phases
from benchmarks.report import TARGETS, json_line, target_lines, throughput_lines
from benchmarks.suite import run_suite


def tiny(workdir: Path, phases: str) -> BenchConfig:
    """A few hundred users over small catalogs: the large one still crosses the HNSW threshold."""
    return replace(
        BenchConfig(workdir=workdir, phases=parse_phases(phases, None)).quick(),
        events=2_000,
        users=300,
        items=1_000,
        large_catalog=3_000,
        max_batch=250,
        core_cap_s=120.0,  # the counts below are exact only if the time cap never cuts a run short
        runs=(RunSpec("gru", "small", False), PRIMARY),
    )


def test_core_and_state_phases_give_rates_and_state_sizes(tmp_path: Path) -> None:
    figures = run_suite(tiny(tmp_path, "core,state,profile"))
    assert not [k for k in figures if k.startswith(("errors.", "skipped."))], figures
    for name in ("gru-1k-exact", "gru-3k-hnsw"):
        assert figures[f"rate.core.{name}"] > 0
        assert figures[f"rate.core.{name}.events"] == 2_000
        assert figures[f"rate.core.{name}.complete"] is True
    assert figures["rate.core_all_threads.gru-3k-hnsw"] > 0
    # Every user's state was encoded; the LSTM state carries a cell vector as large as the hidden one.
    assert figures["state.gru.users"] == figures["state.lstm.users"] > 0
    difference = figures["state.lstm.bytes_mean"] - figures["state.gru.bytes_mean"]
    assert difference == pytest.approx(4 * figures["state.gru.hidden"])
    # The profile splits the core's time; without a worker rate there is no framework part.
    assert figures["profile.model_step_us"] > 0 and figures["profile.scoring_us"] > 0
    assert "profile.framework_us" not in figures
    shares = [v for k, v in figures.items() if k.endswith("_share")]
    assert abs(sum(shares) - 1.0) < 0.01
    # Broker phases were not selected, so no broker figures and no ratios against them.
    assert not any(k.startswith(("rate.worker", "rate.faust", "ratio.")) for k in figures)
    table = throughput_lines(figures)
    assert table[0].split() == ["design", "events/s", "events", "seconds", "all", "events"]
    assert any(line.startswith("core.gru-3k-hnsw ") for line in table)
    assert orjson.loads(json_line(figures)) == figures


def test_cli_prints_tables_then_one_json_line(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(bench_command)
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(
        app, ["--quick", "--only", "state", "--workdir", str(tmp_path), "--json-out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    figures = orjson.loads(lines[-1])
    assert figures == orjson.loads(out.read_bytes())
    assert figures["meta.quick"] is True and figures["state.gru.hidden"] == 64
    targets = target_lines(figures)
    assert targets[0].split() == ["target", "goal", "measured", "pass"]
    assert len(targets) == 2 + len(TARGETS)
    assert all(line in lines for line in targets)
    state_row = next(line for line in targets if line.startswith("state per user"))
    assert state_row.split()[-1] in ("PASS", "FAIL")  # measured, so judged
    assert next(line for line in targets if line.startswith("two workers")).split()[-1] == "-"  # not run


def test_unknown_phase_is_a_usage_error(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(bench_command)
    result = CliRunner().invoke(app, ["--only", "cieling", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "cieling" in result.output

"""`behavior-stream bench`: run the benchmark suite (package `bench`), print the tables and a JSON line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def bench_command(
    quick: Annotated[
        bool, typer.Option(help="A few thousand events: seconds per phase, rough figures.")
    ] = False,
    only: Annotated[str | None, typer.Option(help="Comma-separated phases to run (default: all).")] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated phases to leave out.")] = None,
    workdir: Annotated[Path, typer.Option(help="Checkpoints, logs and Faust data go here.")] = Path(
        "runs/bench"
    ),
    budget: Annotated[
        float | None, typer.Option(help="Seconds after which remaining phases are skipped [default: 480].")
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Throughput, latency, scale-out, memory and training cost, side by side in one run.

    Phases: ceiling, faust, naive, quix, worker, latency, scale, state, rss, profile, training, core.
    Progress goes to stderr; the tables and, last, one line of JSON with every figure to stdout.
    """
    try:
        from bench.config import BUDGET_S, BenchConfig, parse_phases
        from bench.report import json_line, report_lines
        from bench.suite import run_suite
    except ImportError as exc:
        raise typer.BadParameter(
            f"the bench package is not importable ({exc}); install with pip install -e '.[bench]'"
        ) from exc
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        phases = parse_phases(only, skip)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only/--skip") from None
    config = BenchConfig(workdir=workdir, phases=phases)
    figures = run_suite(config.quick() if quick else config, BUDGET_S if budget is None else budget)
    for line in report_lines(figures):
        typer.echo(line)
    line = json_line(figures)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(line + "\n")
    typer.echo(line)

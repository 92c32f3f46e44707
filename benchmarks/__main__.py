"""`python -m benchmarks` (`make bench`, `behavior-stream bench`): the suite, its tables and a JSON line.

The benchmarks live beside the package, not in it: they import `behavior_stream`, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from behavior_stream.stream.runtime.logs import configure_logging


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
    from benchmarks.config import BUDGET_S, BenchConfig, parse_phases
    from benchmarks.report import json_line, report_lines
    from benchmarks.suite import run_suite

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


def main() -> None:
    """Entry point of `python -m benchmarks`."""
    # Here, not in bench_command, which tests run in-process. Phases report progress at INFO;
    # Faust and aiokafka stay at WARNING.
    configure_logging("info")
    typer.run(bench_command)


if __name__ == "__main__":
    main()

"""`behavior-stream bench`: run the benchmark suite of a source checkout (`python -m benchmarks`).

The benchmarks are not part of the installed package (they import it, never the reverse), so
this command runs them as a subprocess from the current directory, which must be a checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from behavior_stream.cli.errors import InputError


def bench_command(ctx: typer.Context) -> None:
    """Throughput, latency, scale-out, memory and training cost, side by side in one run.

    Run from the repository checkout; every option is passed on (`--help` lists them:
    --quick, --only, --skip, --workdir, --budget, --json-out).
    """
    here = Path.cwd()
    if not (here / "benchmarks" / "__main__.py").is_file():
        # The command passes --help on (the benchmarks' own lists their options), so outside
        # a checkout it shows this command's help instead of the error.
        if "--help" in ctx.args:
            typer.echo(ctx.get_help())  # as click's own --help does
            typer.echo(
                f" No benchmarks/ in {here}: run from the source checkout, where --help lists their options."
            )
            raise typer.Exit(0)
        raise InputError(
            str(here), "no benchmarks/ here: run `behavior-stream bench` from the source checkout"
        )
    code = subprocess.call([sys.executable, "-m", "benchmarks", *ctx.args])
    raise typer.Exit(code)

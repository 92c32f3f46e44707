"""`behavior-stream bench`: run the benchmark suite of a source checkout (`python -m benchmarks`).

The benchmarks are not part of the installed package (they import it, never the reverse), so
this command runs them as a subprocess from the current directory, which must be a checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer


def bench_command(ctx: typer.Context) -> None:
    """Throughput, latency, scale-out, memory and training cost, side by side in one run.

    Run from the repository checkout; every option is passed on (`--help` lists them:
    --quick, --only, --skip, --workdir, --budget, --json-out).
    """
    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        typer.echo(
            f"error: no benchmarks/ in {Path.cwd()}: run `behavior-stream bench` from the source checkout",
            err=True,
        )
        raise typer.Exit(2)
    code = subprocess.call([sys.executable, "-m", "benchmarks", *ctx.args])
    raise typer.Exit(code)

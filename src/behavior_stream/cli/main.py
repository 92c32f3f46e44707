"""`behavior-stream`: the one command line of the project (typer), a subcommand per job."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from behavior_stream.cli.bench import bench_command
from behavior_stream.cli.compare import compare_command
from behavior_stream.cli.errors import ErrorHandlingGroup, InputError
from behavior_stream.cli.evaluate import evaluate_command
from behavior_stream.cli.options import load_flag_settings, parse_format, positive
from behavior_stream.cli.retrain import retrain_command
from behavior_stream.cli.train import train_command
from behavior_stream.cli.tune import tune_command
from behavior_stream.simulate.catalog import MAX_CATEGORIES
from behavior_stream.simulate.generator import DEFAULT_EVENTS, DEFAULT_ITEMS, DEFAULT_SEED, DEFAULT_USERS
from behavior_stream.stream.runtime.logs import LEVELS, configure_logging

app = typer.Typer(
    help="Real-time user representations and next-item recommendations from behavior events.",
    no_args_is_help=True,
    add_completion=False,
    cls=ErrorHandlingGroup,  # bad input -> one line and exit 2 (cli/errors.py)
    pretty_exceptions_enable=False,
)
app.command("train", help="Train a GRU/LSTM sequence model on an event log.")(train_command)
app.command("evaluate", help="Evaluate a checkpoint and the baselines; writes metrics.json and a report.")(
    evaluate_command
)
app.command(
    "retrain", help="Retrain on the recent log (file or topic) and publish the checkpoint workers hot-reload."
)(retrain_command)
app.command(
    "tune", help="Search model and training settings on validation (Optuna); writes a config for train."
)(tune_command)
app.command(
    "bench",
    help="Benchmarks (from a source checkout): throughput, latency, scale-out, memory, training cost.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)(bench_command)
app.command(
    "compare", help="Compare two checkpoints on every metric, with paired bootstrap CIs of the differences."
)(compare_command)


@app.callback()
def configure(
    ctx: typer.Context,
    log_level: Annotated[
        str | None,
        typer.Option(help=f"{'|'.join(LEVELS)} for every command (default: info; worker: its setting)."),
    ] = None,
    debug: Annotated[
        bool, typer.Option(help="Show the traceback of an error instead of the one-line message.")
    ] = False,
) -> None:
    """Real-time user representations and next-item recommendations from behavior events."""
    try:
        configure_logging(log_level or "info")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None
    ctx.obj = log_level  # flags win over the environment: the worker uses it unless given its own


def port_in_use(port: int) -> bool:
    """Whether a program listens on `port` of 127.0.0.1 (a bind as a server's, SO_REUSEADDR, fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output JSONL file (.gz for gzip).")],
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = DEFAULT_USERS,
    items: Annotated[int, typer.Option(min=1, help="Catalog size.")] = DEFAULT_ITEMS,
    events: Annotated[int, typer.Option(min=1, help="Number of events.")] = DEFAULT_EVENTS,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same file).")] = DEFAULT_SEED,
    categories: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_CATEGORIES, help="Number of categories (default: from items)."),
    ] = None,
) -> None:
    """Write synthetic, realistic e-commerce behavior events (plus an item catalog sidecar)."""
    from behavior_stream.simulate.generator import generate as run_generate

    if categories is not None and categories > items:
        raise typer.BadParameter(
            f"at most --items ({items:,}): every category needs an item, got {categories:,}",
            param_hint="--categories",
        )
    data = run_generate(users, items, events, seed, out, categories=categories)
    typer.echo(
        f"wrote {data.stats.events:,} events of {data.stats.users:,} users over {items:,} items to {out}"
    )


@app.command()
def broker(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port on 127.0.0.1 (0: any free port).")
    ] = 9092,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory storage) until Ctrl-C."""
    from behavior_stream.testing.broker import EmbeddedBroker

    # A taken port is checked first: the broker would exit at once, but the wait for its port
    # (answered by the other program) would report it listening.
    if port and port_in_use(port):
        raise typer.BadParameter(f"{port} is already in use on 127.0.0.1", param_hint="--port")
    b = EmbeddedBroker(port=port).start()
    typer.echo(f"broker listening on {b.bootstrap} (Ctrl-C to stop)")
    code = 0
    try:
        code = b.wait()
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
    if code > 0:  # not killed by a signal (Ctrl-C, a stop): the broker itself failed
        typer.echo(f"the broker exited with code {code}", err=True)
        raise typer.Exit(1)


@app.command()
def worker(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Model checkpoint (hot-reloaded on change).")
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Broker URL, e.g. kafka://127.0.0.1:9092.")] = None,
    partitions: Annotated[int | None, typer.Option(help="Partitions of the stream topics.")] = None,
    web_port: Annotated[int | None, typer.Option(help="HTTP port for /metrics and the API.")] = None,
    web_host: Annotated[str | None, typer.Option(help="HTTP bind address (default 127.0.0.1).")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Micro-batch size.")] = None,
    batch_ms: Annotated[int | None, typer.Option(help="Micro-batch wait in ms.")] = None,
    top_k: Annotated[int | None, typer.Option(help="Items per recommendation message.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Faust data directory.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug|info|warning|error.")] = None,
) -> None:
    """Run a stream worker. Every setting also reads BEHAVIOR_STREAM_<NAME> (flags win)."""
    from behavior_stream.stream.runtime.worker import run_worker

    settings = load_flag_settings(
        checkpoint=checkpoint,
        broker=broker,
        partitions=partitions,
        web_port=web_port,
        web_host=web_host,
        max_batch=max_batch,
        batch_ms=batch_ms,
        top_k=top_k,
        data_dir=data_dir,
        log_level=log_level or ctx.obj,
    )
    configure_logging(settings.log_level)
    sys.argv = sys.argv[:1]  # Faust's worker parses argv itself; our flags are already applied
    run_worker(settings)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="Event log to replay.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl|taobao|diginetica|gru4rec.")] = "jsonl",
    speed: Annotated[
        float | None, typer.Option(help="Play X times event time (60 = 1 h per minute).")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Cap at this many events per second.")] = None,
    max_: Annotated[bool, typer.Option("--max", help="As fast as the broker takes (the default).")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send only the first N events (in time order).")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Target topic (default: the input topic setting).")
    ] = None,
    broker: Annotated[str | None, typer.Option(help="Broker URL, e.g. kafka://127.0.0.1:9092.")] = None,
    purchases: Annotated[Path | None, typer.Option(help="DIGINETICA purchases file to join.")] = None,
) -> None:
    """Produce an event log to Kafka keyed by user_id, in event-time order, with a progress bar."""
    import asyncio
    from datetime import UTC, datetime

    from behavior_stream.data.loaders import load_events
    from behavior_stream.stream.runtime.kafka import ensure_topics
    from behavior_stream.testing.replay import Pace, replay_events
    from behavior_stream.training.progress import Progress

    # Every option is checked before the file is read and the broker waited for (up to 10 s).
    fmt_ = parse_format(fmt)
    if sum(x is not None and x is not False for x in (speed, rate, max_ or None)) > 1:
        raise typer.BadParameter("choose one of --speed, --rate and --max")
    pace = Pace(speed=positive(speed, "--speed"), rate=positive(rate, "--rate"))
    settings = load_flag_settings(broker=broker)
    loaded = load_events(file, fmt_, purchases=purchases)
    events = loaded.events[:limit] if limit is not None else loaded.events
    if not events:
        raise InputError(str(file), f"no valid events ({loaded.report.summary()})")
    from behavior_stream.stream.runtime.worker import wait_for_broker  # torch, faiss: only when needed

    asyncio.run(wait_for_broker(settings))
    asyncio.run(ensure_topics(settings, [topic or settings.input_topic]))
    # A bar on a terminal; in a log, a line every 10 s (the summary line below closes it).
    bar = Progress(len(events), "replay", "ev", every_s=10.0)

    def progress(sent: int, last_ts: int) -> None:
        bar.postfix(at=datetime.fromtimestamp(last_ts / 1000, UTC).strftime("%Y-%m-%d %H:%M"))
        bar.update(sent)

    with bar:
        summary = asyncio.run(replay_events(settings, events, topic, pace, progress))
    skipped = ", ".join(f"{r} {n}" for r, n in loaded.report.malformed.most_common()) or "none"
    typer.echo(f"sent {summary.sent:,} events in {summary.seconds:.1f}s ({summary.rate:,.0f}/s) "
               f"to {topic or settings.input_topic}; malformed rows skipped: {skipped}")  # fmt: skip


@app.command()
def demo(
    data: Annotated[Path | None, typer.Option(help="Replay this file instead of generated data.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Format of --data.")] = "jsonl",
    cell: Annotated[str, typer.Option(help="gru|lstm.")] = "gru",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (cached checkpoint reused).")] = 4,
    workdir: Annotated[Path, typer.Option(help="Where data, checkpoints and logs go.")] = Path("runs/demo"),
    web_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Worker HTTP port (0: any free port).")
    ] = 6066,
    keep_running: Annotated[bool, typer.Option(help="Leave the worker up for a dashboard.")] = False,
) -> None:
    """The whole system from nothing: broker, data, training, worker, replay, summary."""
    from behavior_stream.cli.demo import DemoOptions, run_demo
    from behavior_stream.nn.config import CELLS

    if cell not in CELLS:
        raise typer.BadParameter(f"{cell!r} is not one of {', '.join(CELLS)}", param_hint="--cell")
    opts = DemoOptions(
        workdir=workdir,
        data=data,
        fmt=parse_format(fmt),
        cell=cell,  # type: ignore[arg-type]
        epochs=epochs,
        keep_running=keep_running,
        web_port=web_port,
    )
    try:
        run_demo(opts)
    except KeyboardInterrupt:
        typer.echo("interrupted: stopped the worker and the broker")
        raise typer.Exit(130) from None


def main() -> None:
    """Console-script entry point."""
    app(prog_name="behavior-stream")  # also under `python -m behavior_stream.cli.main`


if __name__ == "__main__":
    main()
